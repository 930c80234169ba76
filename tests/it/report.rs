//! `ckptlab run FILE --report FILE.html` as a user takes it: the real binary writes the page, and
//! headless Chromium (Debian's `chromium`, installed here when missing and allowed) renders it to
//! a screenshot in which the timeline's bars and the verdict's rows must show.

use std::path::{Path, PathBuf};
use std::process::Command;

use ckptlab::report::colour;

use crate::common;

/// Chromium's path, installing Debian's package when missing and we are root (as README's
/// commands install what they need); `None` where it cannot be had.
fn chromium() -> Option<PathBuf> {
    let found = || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(p) = found() {
        return Some(p);
    }
    let root = Command::new("id").arg("-u").output().ok().is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        let _ = Command::new("sh")
            .args(["-c", "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1"])
            .status();
    }
    found()
}

/// Renders `page` to a PNG as the probe of this machine does (no network of its own, a fresh profile).
fn screenshot(chromium: &Path, page: &Path, png: &Path, profile: &Path) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1440,4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

fn rgb(hex: &str) -> [u8; 3] {
    let n = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("a colour");
    [(n >> 16) as u8, (n >> 8) as u8, n as u8]
}

/// Pixels of each colour in the screenshot (exact RGB: the page's bars and rows are flat fills).
fn count_colours(png: &Path, colours: &[[u8; 3]]) -> Vec<usize> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).expect("the screenshot")));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let mut counts = vec![0; colours.len()];
    for px in buf[..info.buffer_size()].chunks(step) {
        for (i, c) in colours.iter().enumerate() {
            if px[..3] == c[..] {
                counts[i] += 1;
            }
        }
    }
    counts
}

/// The at-least-once overcount scenario (a kill, a restore, keys counted twice) written as a
/// page: the binary's exit code is the scenario's, the page holds a timeline row per subtask
/// with the kill marked, the checkpoint parts, the charts, and every overcounted key explained;
/// Chromium's screenshot shows the timeline's bars and the verdict's red and green rows.
/// Catches: no page, a page written before the run ended (no restore), a timeline without its
/// bars or marks, a verdict without its rows, a page that needs the network to render.
#[test]
fn a_runs_report_page_shows_the_timeline_and_the_verdict_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("run.html");
    let out = common::binary()
        .current_dir(dir.path())
        .args(["run", "at-least-once-overcounts", "-q", "--report"])
        .arg(&page)
        .output()
        .expect("ckptlab runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("report: {}", page.display())), "{text}");
    let html = std::fs::read_to_string(&page).expect("the page");
    for t in ["source[0]", "source[1]", "counter[0]", "counter[1]", "sink[0]"] {
        assert!(html.contains(&format!(">{t}</text>")), "timeline row {t}");
    }
    assert!(html.contains(">kill</text>") && html.contains(">restored</text>"), "kill and restore marked");
    assert!(html.contains("chk 1: async"), "checkpoint parts drawn");
    for id in ["chart-duration", "chart-size", "chart-rate", "chart-backpressure"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "chart {id}");
    }
    assert!(html.contains("Why each key is wrong") && html.contains("applied more than once"), "overcounted keys explained");
    for bad in ["http://", "https://", "<script", "<link"] {
        assert!(!html.contains(bad), "self-contained: the page holds {bad}");
    }

    let Some(chromium) = chromium() else {
        common::skip("no chromium (Debian's package `chromium`) to render the report page");
        return;
    };
    let png = dir.path().join("run.png");
    let shot = screenshot(&chromium, &page, &png, &dir.path().join("profile"));
    assert!(png.is_file(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&shot.stderr));
    let wanted = [colour::ASYNC, colour::START_DELAY, colour::ROW_BAD, colour::ROW_OK, colour::MARK];
    let counts = count_colours(&png, &wanted.map(rgb));
    // The timeline's bars are a few pixels wide each; the verdict's rows are table rows.
    for (name, n) in ["async bars", "start-delay bars", "wrong-key rows", "exact-key rows", "kill/restart marks"].iter().zip(&counts) {
        assert!(*n >= 20, "the screenshot shows too few pixels of the {name} ({n}): {counts:?}");
    }
}
