//! Where each pane goes: the screen's arrangement as a [`Plan`] of areas that [`super::render`]
//! draws. The plan is measured sizes in, areas out, so a test checks that every [`Pane`] is drawn
//! or left out with a reason, in every arrangement the workbench can show. A pane's place is one
//! arm of [`place`]'s exhaustive match: a new pane is placed where the compiler points.
//!
//! ```text
//! status line
//! ┌ job graph ───────────┐┌ checkpoints ───────┐
//! │                      ││                    │
//! └──────────────────────┘└ output ────────────┘
//! ┌ state ───────────────┐│                    │
//! │                      │└ events ────────────┘
//! └──────────────────────┘│                    │
//! ┌ input ──────────────────────────────────────┐
//! footer
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use strum::IntoEnumIterator;

use super::app::{App, Pane};
use super::panes;

/// What fills an area of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Pane(Pane),
    /// The banner under the status line (a restart that found no checkpoint ...).
    Banner,
    /// A playing scenario's narration, in the events' place.
    Scenario,
    /// A lesson's band across the bottom of the panes, full width.
    Lesson,
    Footer,
}

/// What the arrangement depends on, measured from the app.
#[derive(Debug, Clone)]
pub struct Shape {
    pub area: Rect,
    pub status_height: u16,
    pub banner_height: u16,
    /// The graph's lines with its legend and borders.
    pub graph_lines: u16,
    pub lesson: bool,
    pub scenario: bool,
    /// The panes the lesson's step on view points at.
    pub highlight: Vec<Pane>,
}

impl Shape {
    pub fn of(app: &App, area: Rect) -> Shape {
        Shape {
            area,
            status_height: panes::status_line::height(app, area.width as usize),
            banner_height: panes::banner::height(app, area.width),
            graph_lines: panes::graph::lines_wanted(app) as u16 + 2,
            lesson: app.lesson.is_some(),
            scenario: app.scenario.is_some(),
            highlight: Pane::iter().filter(|p| panes::lesson::highlights(app, *p)).collect(),
        }
    }
}

/// The screen's areas, and the panes this arrangement leaves out with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub drawn: Vec<(Slot, Rect)>,
    pub absent: Vec<(Pane, &'static str)>,
}

/// The arrangements of the panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrangement {
    /// Graph and state on the left; checkpoints, output and events on the right.
    Plain,
    /// A scenario playing: its narration takes the events' place.
    Scenario,
    /// A lesson's band on a screen shorter than [`panes::lesson::TALL`]: two panes a column at
    /// most, and the one the step points at gets its column (issue 25 §7).
    ShortLesson,
}

/// Where a pane goes in an arrangement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    StatusLine,
    InputLine,
    /// In the left column, with this share of it (all of it when alone there).
    Left(Constraint),
    /// In the right column, the same.
    Right(Constraint),
    Absent(&'static str),
}

/// Every pane's place: a new [`Pane`] is one more arm here. `marked` is whether the lesson's step
/// points at a pane.
fn place(pane: Pane, arrangement: Arrangement, marked: &dyn Fn(Pane) -> bool, graph_height: u16) -> Place {
    use Arrangement::{Plain, Scenario, ShortLesson};
    use Constraint::{Length, Min, Percentage};
    // A column of a short screen gives a pane the step points at all of it, unless the step
    // points at both of the column's panes.
    let only = |it: Pane, other: Pane| marked(it) && !marked(other);
    match pane {
        Pane::Status => Place::StatusLine,
        Pane::Input => Place::InputLine,
        Pane::Graph => match arrangement {
            ShortLesson if only(Pane::State, Pane::Graph) => Place::Absent("the step points at the state: it takes the column"),
            Plain | Scenario | ShortLesson => Place::Left(Length(graph_height)),
        },
        Pane::State => match arrangement {
            ShortLesson if only(Pane::Graph, Pane::State) => Place::Absent("the step points at the graph: it takes the column"),
            Plain | Scenario | ShortLesson => Place::Left(Min(0)),
        },
        Pane::Checkpoints => match arrangement {
            Plain => Place::Right(Percentage(38)),
            Scenario => Place::Right(Percentage(34)),
            ShortLesson if !marked(Pane::Checkpoints) && (marked(Pane::Output) || marked(Pane::Events)) => {
                Place::Absent("the step points at the output or the events: they take the column")
            }
            ShortLesson => Place::Right(Percentage(50)),
        },
        Pane::Output => match arrangement {
            Plain => Place::Right(Percentage(34)),
            Scenario => Place::Right(Percentage(30)),
            ShortLesson if marked(Pane::Events) => Place::Absent("the step points at the events: they take the output's place"),
            ShortLesson if only(Pane::Checkpoints, Pane::Output) => Place::Absent("the step points at the checkpoints: they take the column"),
            ShortLesson => Place::Right(Percentage(50)),
        },
        Pane::Events => match arrangement {
            Plain => Place::Right(Percentage(28)),
            Scenario => Place::Absent("a scenario playing: its narration is the better log then"),
            ShortLesson if marked(Pane::Events) => Place::Right(Percentage(50)),
            ShortLesson => Place::Absent("too short for three panes on the right: the lesson says what happens"),
        },
    }
}

/// The areas of the screen for `shape` (at least [`super::render::MIN_WIDTH`] x
/// [`super::render::MIN_HEIGHT`]).
pub fn plan(shape: &Shape) -> Plan {
    let area = shape.area;
    let [status, banner, body, input, footer] = Layout::vertical([
        Constraint::Length(shape.status_height),
        Constraint::Length(shape.banner_height),
        Constraint::Min(0),
        Constraint::Length(panes::input::HEIGHT),
        Constraint::Length(1),
    ])
    .areas(area);
    let tall = area.height >= panes::lesson::TALL;
    let (body, band) = if shape.lesson {
        let rows = if tall { panes::lesson::BAND_HEIGHT_TALL } else { panes::lesson::BAND_HEIGHT };
        let [body, band] = Layout::vertical([Constraint::Min(0), Constraint::Length(rows)]).areas(body);
        (body, Some(band))
    } else {
        (body, None)
    };
    let arrangement = match (shape.lesson && !tall, shape.scenario) {
        (true, _) => Arrangement::ShortLesson,
        (false, true) => Arrangement::Scenario,
        (false, false) => Arrangement::Plain,
    };
    // The graph's lines need about 40 columns at 80; wider screens give the left side more.
    let left_share = if area.width >= 120 { 55 } else { 50 };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(left_share), Constraint::Percentage(100 - left_share)]).areas(body);
    // The graph takes the lines it needs (two per TM at most, one per channel), the state the rest.
    let graph_height = shape.graph_lines.min(left.height.saturating_mul(3) / 5).max(6);
    let marked = |pane: Pane| shape.highlight.contains(&pane);
    let mut plan = Plan { drawn: vec![(Slot::Pane(Pane::Status), status), (Slot::Banner, banner)], absent: Vec::new() };
    let (mut left_column, mut right_column) = (Vec::new(), Vec::new());
    for pane in Pane::iter() {
        match place(pane, arrangement, &marked, graph_height) {
            Place::StatusLine | Place::InputLine => {}
            Place::Left(share) => left_column.push((Slot::Pane(pane), share)),
            Place::Right(share) => right_column.push((Slot::Pane(pane), share)),
            Place::Absent(why) => plan.absent.push((pane, why)),
        }
    }
    if arrangement == Arrangement::Scenario {
        right_column.push((Slot::Scenario, Constraint::Percentage(36)));
    }
    stack(&mut plan.drawn, left, &left_column);
    stack(&mut plan.drawn, right, &right_column);
    if let Some(band) = band {
        plan.drawn.push((Slot::Lesson, band));
    }
    plan.drawn.push((Slot::Pane(Pane::Input), input));
    plan.drawn.push((Slot::Footer, footer));
    plan
}

/// A column's slots top to bottom, each its share; one alone takes the whole column.
fn stack(drawn: &mut Vec<(Slot, Rect)>, column: Rect, slots: &[(Slot, Constraint)]) {
    if let [(slot, _)] = slots {
        return drawn.push((*slot, column));
    }
    let areas = Layout::vertical(slots.iter().map(|(_, share)| *share)).split(column);
    drawn.extend(slots.iter().map(|(slot, _)| *slot).zip(areas.iter().copied()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(width: u16, height: u16, lesson: bool, scenario: bool, highlight: Vec<Pane>) -> Shape {
        Shape {
            area: Rect::new(0, 0, width, height),
            status_height: 1,
            banner_height: 0,
            graph_lines: 8,
            lesson,
            scenario,
            highlight,
        }
    }

    /// Every set of panes a step can highlight (each subset of the panes).
    fn every_highlight() -> impl Iterator<Item = Vec<Pane>> {
        let panes: Vec<Pane> = Pane::iter().collect();
        (0..1u32 << panes.len()).map(move |bits| panes.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, p)| *p).collect())
    }

    /// Every arrangement the workbench can show: with and without a scenario and a lesson, short
    /// and tall, narrow and wide, whatever the step highlights.
    fn every_shape() -> impl Iterator<Item = Shape> {
        [(80, 24), (80, 40), (120, 24), (160, 50)].into_iter().flat_map(|(w, h)| {
            [(false, false), (false, true), (true, false), (true, true)].into_iter().flat_map(move |(lesson, scenario)| {
                let highlights: Vec<Vec<Pane>> = if lesson { every_highlight().collect() } else { vec![Vec::new()] };
                highlights.into_iter().map(move |hl| shape(w, h, lesson, scenario, hl))
            })
        })
    }

    fn drawn(plan: &Plan, pane: Pane) -> bool {
        plan.drawn.iter().any(|(s, _)| *s == Slot::Pane(pane))
    }

    #[test]
    fn every_pane_is_drawn_once_or_absent_with_a_reason_in_every_arrangement() {
        for shape in every_shape() {
            let plan = plan(&shape);
            for pane in Pane::iter() {
                let times = plan.drawn.iter().filter(|(s, _)| *s == Slot::Pane(pane)).count();
                let absent: Vec<&str> = plan.absent.iter().filter(|(p, _)| *p == pane).map(|(_, why)| *why).collect();
                match (times, absent.as_slice()) {
                    (1, []) => {}
                    (0, [why]) => assert!(!why.is_empty(), "{pane:?} absent without a reason in {shape:?}"),
                    _ => panic!("{pane:?} drawn {times} times, absent {absent:?} in {shape:?}"),
                }
            }
        }
    }

    #[test]
    fn the_drawn_areas_lie_on_the_screen_and_do_not_overlap() {
        for shape in every_shape() {
            let plan = plan(&shape);
            for (i, (a, ra)) in plan.drawn.iter().enumerate() {
                assert!(shape.area.contains(ra.as_position()) || ra.is_empty(), "{a:?} at {ra:?} off {shape:?}");
                for (b, rb) in &plan.drawn[i + 1..] {
                    assert!(!ra.intersects(*rb), "{a:?} {ra:?} overlaps {b:?} {rb:?} in {shape:?}");
                }
            }
        }
    }

    #[test]
    fn without_a_lesson_or_a_scenario_every_pane_is_drawn() {
        for (w, h) in [(80, 24), (80, 40), (160, 50)] {
            let plan = plan(&shape(w, h, false, false, Vec::new()));
            assert_eq!(plan.absent, [], "at {w}x{h}");
        }
    }

    #[test]
    fn a_highlighted_pane_is_drawn_unless_a_short_screen_gives_its_place_to_another_highlighted_one() {
        for shape in every_shape() {
            let plan = plan(&shape);
            for pane in shape.highlight.iter().filter(|p| !drawn(&plan, **p)) {
                // The scenario's narration replaces the events whatever the step says; otherwise a
                // pane gives way only to another pane the same step points at.
                let scenario_events = shape.scenario && *pane == Pane::Events;
                let other = shape.highlight.iter().any(|p| p != pane && drawn(&plan, *p));
                assert!(scenario_events || other, "{pane:?} highlighted, not drawn, in {shape:?}");
            }
        }
    }

    /// The shipped lessons at 80x24 and 80x40: every pane a step points at is on the screen, but
    /// for the output under a step that points at the events too (the events take its place).
    #[test]
    fn the_shipped_lessons_highlights_are_drawn() {
        for (name, text) in crate::lesson::SHIPPED {
            let lesson = crate::lesson::Lesson::parse(text, name).expect("a shipped lesson parses");
            for step in &lesson.steps {
                for (w, h) in [(80, 24), (80, 40)] {
                    let plan = plan(&shape(w, h, true, false, step.highlight.clone()));
                    for pane in step.highlight.iter().filter(|p| !drawn(&plan, **p)) {
                        let short_pair = h < panes::lesson::TALL && *pane == Pane::Output && step.highlight.contains(&Pane::Events);
                        assert!(short_pair, "{name} line {}: {pane:?} highlighted, not drawn at {w}x{h}", step.line);
                    }
                }
            }
        }
    }
}
