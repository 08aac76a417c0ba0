//! The figures table, as the README shows it.

use std::fmt::Write;

/// One measured line: what ran, the figure, the target, whether it is met.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub measured: String,
    pub target: String,
    pub met: Option<bool>,
}

/// All the rows of one run, with the machine they ran on.
#[derive(Debug, Default)]
pub struct Table {
    pub machine: String,
    pub rows: Vec<Row>,
}

impl Table {
    /// Adds a row; `met` is `None` where there is no target to meet.
    pub fn add(&mut self, what: &str, measured: String, target: &str, met: Option<bool>) {
        self.rows.push(Row {
            what: what.to_owned(),
            measured,
            target: target.to_owned(),
            met,
        });
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!("Machine: {}\n\n", self.machine);
        out.push_str("| what | measured | target | met |\n| --- | --- | --- | --- |\n");
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.what, row.measured, row.target, met
            );
        }
        out
    }
}
