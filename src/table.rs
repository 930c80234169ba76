//! Plain-text tables, as `ckptlab run`, `inspect`, `bench` and a compared run print them: each
//! column padded to its widest cell (or a minimum), cells apart by a gap, lines without trailing
//! blanks, and rules of `-` as wide as the table.
//!
//! ```
//! use ckptlab::table::{Column, TextTable};
//! let mut t = TextTable::new(vec![Column::left(), Column::right()]);
//! t.row(["key", "count"]);
//! t.rule();
//! t.row(["a", "12"]);
//! assert_eq!(t.render(), "key  count\n----------\na       12\n");
//! ```

/// Which side of its column a cell keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// One column: its alignment, its least width and what stands before it (ignored on the first).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    align: Align,
    min_width: usize,
    gap: &'static str,
}

impl Column {
    pub fn left() -> Self {
        Column { align: Align::Left, min_width: 0, gap: "  " }
    }

    pub fn right() -> Self {
        Column { align: Align::Right, min_width: 0, gap: "  " }
    }

    /// At least `width` characters, however narrow its cells.
    pub fn min(self, width: usize) -> Self {
        Column { min_width: width, ..self }
    }

    /// What separates this column from the one before (two blanks unless told).
    pub fn gap(self, gap: &'static str) -> Self {
        Column { gap, ..self }
    }
}

enum Line {
    /// The cells, and a mark written after the last one, outside every column.
    Row(Vec<String>, String),
    Rule,
}

/// Rows collected, then rendered at once (widths need every row).
pub struct TextTable {
    columns: Vec<Column>,
    indent: &'static str,
    lines: Vec<Line>,
}

impl TextTable {
    pub fn new(columns: Vec<Column>) -> Self {
        TextTable { columns, indent: "", lines: Vec::new() }
    }

    /// Written before every line (rules included).
    pub fn indent(self, indent: &'static str) -> Self {
        TextTable { indent, ..self }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.row_marked(cells, "");
    }

    /// A row with `mark` after its last cell (`  *` for a row that differs), not counted in any width.
    pub fn row_marked<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>, mark: &str) {
        self.lines.push(Line::Row(cells.into_iter().map(Into::into).collect(), mark.to_string()));
    }

    /// A line of `-` as wide as the table.
    pub fn rule(&mut self) {
        self.lines.push(Line::Rule);
    }

    /// Each column as wide as its widest cell, or its minimum.
    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.min_width).collect();
        for line in &self.lines {
            if let Line::Row(cells, _) = line {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let rule_width: usize = widths.iter().sum::<usize>() + self.columns.iter().skip(1).map(|c| c.gap.chars().count()).sum::<usize>();
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Row(cells, mark) => out.push_str(&self.format(cells, mark, &widths)),
                Line::Rule => out.push_str(&format!("{}{}", self.indent, "-".repeat(rule_width))),
            }
            out.push('\n');
        }
        out
    }

    /// One row at the columns' minimum widths, without a line end: for a table printed a row at
    /// a time while it is measured (`ckptlab bench`), whose widths cannot wait for every row.
    pub fn line<S: AsRef<str>>(&self, cells: &[S], mark: &str) -> String {
        let cells: Vec<String> = cells.iter().map(|c| c.as_ref().to_string()).collect();
        let widths: Vec<usize> = self.columns.iter().map(|c| c.min_width).collect();
        self.format(&cells, mark, &widths)
    }

    fn format(&self, cells: &[String], mark: &str, widths: &[usize]) -> String {
        let mut out = self.indent.to_string();
        for (i, ((cell, column), w)) in cells.iter().zip(&self.columns).zip(widths).enumerate() {
            if i > 0 {
                out.push_str(column.gap);
            }
            match column.align {
                Align::Left => out.push_str(&format!("{cell:<w$}")),
                Align::Right => out.push_str(&format!("{cell:>w$}")),
            }
        }
        out.push_str(mark);
        out.truncate(out.trim_end().len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_widen_to_their_widest_cell_and_rules_span_the_gaps() {
        let mut t = TextTable::new(vec![Column::left(), Column::right().min(8).gap(" | ")]);
        t.row(["key", "expected"]);
        t.rule();
        t.row(["longer-key", "3"]);
        assert_eq!(t.render(), "key        | expected\n---------------------\nlonger-key |        3\n");
    }

    #[test]
    fn a_mark_stands_outside_the_columns_and_lines_lose_trailing_blanks() {
        let mut t = TextTable::new(vec![Column::left(), Column::left()]);
        t.row_marked(["a", ""], "  *");
        t.row(["bb", ""]);
        assert_eq!(t.render(), "a     *\nbb\n");
    }

    #[test]
    fn a_streamed_line_keeps_the_minimum_widths() {
        let t = TextTable::new(vec![Column::left().min(4), Column::right().min(5).gap(" ")]).indent("  ");
        assert_eq!(t.line(&["ab", "1 ms"], " (x)"), "  ab    1 ms (x)");
    }
}
