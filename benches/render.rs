//! Frame render time: the whole screen drawn from a real engine's view into ratatui's TestBackend
//! (layout, every pane, the buffer diff; no terminal I/O), at 80x24 and 200x60, plus the cost of
//! taking the view itself with and without the verdict. `cargo bench --bench render`.

use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use ckptlab::cluster::Engine;
use ckptlab::config::{parse_loose_value, ConfigLayers};
use ckptlab::events::EventBus;
use ckptlab::scenario::{await_condition, AwaitCondition};
use ckptlab::tui::app::{App, LogKind};
use ckptlab::tui::keymap::Keymap;
use ckptlab::tui::render::render;
use ckptlab::tui::theme::Theme;

const RECORDS: usize = 10_000;
const KEYS: usize = 100;
const FRAMES: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn measure(label: &str, n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "{label:<34} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6
    );
    mean
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut layers = ConfigLayers::builtin();
        for (k, v) in [("ckptlab.hop-delay", "0ms"), ("execution.checkpointing.interval", "200ms"), ("source.auto-offset-reset", "earliest")] {
            layers.set_value(k, parse_loose_value(v), "bench").expect("valid option");
        }
        let engine = Engine::start(layers, EventBus::new(tokio::time::Instant::now())).expect("engine");
        for i in 0..RECORDS {
            engine.produce(&format!("key-{}", i % KEYS), None).expect("produce");
        }
        assert!(await_condition(&engine, AwaitCondition::CaughtUp, Duration::from_secs(60)).await, "engine caught up");
        assert!(await_condition(&engine, AwaitCondition::CheckpointCompleted, Duration::from_secs(60)).await, "a checkpoint");
        let mut app = App::new(engine.view(true), Keymap::default(), Theme::color(), 10);
        for i in 0..500u64 {
            app.log(i * 10, format!("checkpoint {i} completed in 12 ms"), LogKind::Good);
        }
        println!("ckptlab render benchmark: {RECORDS} records over {KEYS} keys, {} output lines, {FRAMES} frames each", app.view.output.len());
        let base = measure("view without verdict", FRAMES, || {
            std::hint::black_box(engine.view(false));
        });
        measure("view with verdict (10k records)", FRAMES / 4, || {
            std::hint::black_box(engine.view(true));
        });
        let mut small = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        let t80 = measure("frame 80x24", FRAMES, || {
            small.draw(|f| render(&app, f)).expect("draw");
        });
        let mut large = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
        let t200 = measure("frame 200x60", FRAMES, || {
            large.draw(|f| render(&app, f)).expect("draw");
        });
        println!(
            "ratios: frame 200x60 / 80x24 = {:.2}; frame 80x24 / view = {:.1}; a frame every 33 ms at most: 80x24 uses {:.2}% of a core at 30 fps",
            t200.as_secs_f64() / t80.as_secs_f64(),
            t80.as_secs_f64() / base.as_secs_f64(),
            t80.as_secs_f64() * 30.0 * 100.0
        );
        engine.shutdown().await;
    });
}
