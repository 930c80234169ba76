//! The input pane: type a record, Enter produces it to the topic (while the job is down too: the
//! topic is outside the cluster). Records produced while the job was down are listed until their
//! source has read them; the title shows each partition's read position and end.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Borders, Paragraph};
use ratatui::Frame;

use crate::cluster::view::TopicKind;
use crate::tui::app::{App, Pane};
use crate::tui::render::{fit, pane_block};

/// A rule with the title, then the line being typed.
pub const HEIGHT: u16 = 2;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let v = &app.view;
    // Kafka: the group's committed offset too (committed when a checkpoint completes).
    let group = |c: Option<u64>| c.map(|c| format!(" group {c}")).unwrap_or_default();
    let topic = if v.all_tasks_running {
        v.partitions
            .iter()
            .map(|p| format!("p{} {}/{}{}", p.partition, p.position, p.end, group(p.committed)))
            .collect::<Vec<_>>()
            .join("  ")
    } else {
        v.partitions.iter().map(|p| format!("p{} end {}{}", p.partition, p.end, group(p.committed))).collect::<Vec<_>>().join("  ")
    };
    let what = if v.all_tasks_running { "read/end" } else { "job down" };
    let name = match &v.source.topic {
        TopicKind::Embedded => "topic".to_string(),
        TopicKind::EmbeddedOnDisk => "embedded".to_string(),
        // A broker list by its first broker, as librdkafka tries them.
        TopicKind::Kafka { servers, mock: false } => format!("kafka {}", servers.split(',').next().unwrap_or_default()),
        TopicKind::Kafka { servers, mock: true } => format!("kafka mock cluster ({servers})"),
    };
    let extra = Line::from(Span::styled(format!("→ {name} ({what}) {topic}"), t.dim));
    let block = pane_block(app, Pane::Input, "Input", Some(extra)).borders(Borders::TOP);
    let width = area.width as usize;
    let mut spans = vec![Span::styled("> ", t.key)];
    if app.input_mode() {
        // The line shows its end when the record is longer than the pane.
        let count = app.input.chars().count();
        let room = width.saturating_sub(2 + 1 + 40);
        let shown: String = if count > room {
            format!("…{}", app.input.chars().skip(count - room.saturating_sub(1)).collect::<String>())
        } else {
            app.input.clone()
        };
        spans.push(Span::raw(shown));
        spans.push(Span::styled("█", t.key));
        let cap = if count >= crate::tui::app::INPUT_MAX { t.bad } else { t.dim };
        spans.push(Span::styled(format!(" {count}/{}", crate::tui::app::INPUT_MAX), cap));
        spans.push(Span::styled("  Enter produces · Esc back · paste: a record per line", t.dim));
    } else if app.input.is_empty() {
        spans.push(Span::styled("i: type a record", t.dim));
    } else {
        spans.push(Span::styled(app.input.clone(), t.dim));
    }
    if let Some(problem) = &v.topic_status {
        let used: usize = spans.iter().map(|s| s.width()).sum();
        spans.push(Span::styled(fit(&format!("   ✗ {problem}"), width.saturating_sub(used)), t.bad));
    }
    let waiting: Vec<&str> = app.waiting().map(|r| r.value.as_str()).collect();
    if !waiting.is_empty() {
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let text = format!("   ⧗ produced while down, not read yet: {}", waiting.join(" "));
        spans.push(Span::styled(fit(&text, width.saturating_sub(used)), t.warn));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).block(block), area);
}
