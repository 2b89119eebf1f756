//! The benchmark report: sections of rows, each figure beside its baseline and the ratio,
//! printed as a table and written to `target/mote/bench/report.md` and `report.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// A fact, not a score (a hash equality, a count).
    Neither,
}

impl Better {
    fn word(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "",
        }
    }
}

/// One figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// What it is compared with, in the same unit (`None`: nothing comparable).
    pub baseline: Option<f64>,
    pub better: Better,
    /// Decimals shown.
    pub decimals: usize,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: &str, better: Better) -> Row {
        Row { name: name.into(), value, unit: unit.into(), baseline: None, better, decimals: 2 }
    }

    pub fn baseline(mut self, baseline: f64) -> Row {
        self.baseline = Some(baseline);
        self
    }

    pub fn decimals(mut self, decimals: usize) -> Row {
        self.decimals = decimals;
        self
    }

    /// value / baseline, when there is a baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.map(|b| self.value / b)
    }
}

/// What one benchmark returns.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// The benchmark's name (`cargo xtask bench NAME`).
    pub name: String,
    pub title: String,
    /// What the baseline column is (`a Linux PVH guest`, `issue #8's target`).
    pub baseline: String,
    /// How the figures were taken, one line each.
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    /// Measurements that could not be taken; any makes `cargo xtask bench` fail.
    pub failures: Vec<String>,
}

/// The whole report.
#[derive(Debug, Default)]
pub struct Report {
    pub environment: String,
    pub sections: Vec<Section>,
}

fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "-".into()
    }
}

/// A section as an aligned text table (also valid Markdown inside a code block).
pub fn table(section: &Section) -> String {
    let header = ["metric", "value", "baseline", "ratio", "better"];
    let mut cells: Vec<[String; 5]> = vec![header.map(String::from)];
    for row in &section.rows {
        cells.push([
            format!("{} ({})", row.name, row.unit),
            number(row.value, row.decimals),
            row.baseline.map_or(String::new(), |b| number(b, row.decimals)),
            row.ratio().map_or(String::new(), |r| number(r, 2)),
            row.better.word().into(),
        ]);
    }
    let widths: Vec<usize> =
        (0..5).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &cells {
        let _ = write!(out, "{:<w$}", row[0], w = widths[0]);
        for i in 1..4 {
            let _ = write!(out, "  {:>w$}", row[i], w = widths[i]);
        }
        let _ = writeln!(out, "  {}", row[4]);
    }
    out
}

/// A section as printed: title, baseline, table, notes, failures.
pub fn text(section: &Section) -> String {
    let mut out = format!("## {}: {}\n", section.name, section.title);
    if !section.baseline.is_empty() {
        let _ = writeln!(out, "baseline: {}; ratio = value / baseline", section.baseline);
    }
    out.push('\n');
    out.push_str(&table(section));
    for note in &section.notes {
        let _ = writeln!(out, "- {note}");
    }
    for failure in &section.failures {
        let _ = writeln!(out, "NOT MEASURED: {failure}");
    }
    out
}

/// The Markdown file: each section's table in a code block, notes as a list.
pub fn markdown(report: &Report) -> String {
    let mut out = format!("# mote benchmark report\n\nenvironment: {}\n", report.environment);
    for section in &report.sections {
        let _ = write!(out, "\n## {}: {}\n\n", section.name, section.title);
        if !section.baseline.is_empty() {
            let _ = writeln!(out, "Baseline: {}; ratio = value / baseline.\n", section.baseline);
        }
        let _ = writeln!(out, "```\n{}```", table(section));
        if !section.notes.is_empty() || !section.failures.is_empty() {
            out.push('\n');
        }
        for note in &section.notes {
            let _ = writeln!(out, "- {note}");
        }
        for failure in &section.failures {
            let _ = writeln!(out, "- **not measured**: {failure}");
        }
    }
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn json_strings(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(", "))
}

/// The JSON file: `{"environment", "sections": [{"name", "title", "baseline", "notes",
/// "failures", "rows": [{"name", "value", "unit", "baseline", "ratio", "better"}]}]}`;
/// figures that are missing or not finite are `null`.
pub fn json(report: &Report) -> String {
    let mut out = format!("{{\n  \"environment\": {},\n  \"sections\": [", json_string(&report.environment));
    for (i, section) in report.sections.iter().enumerate() {
        let rows: Vec<String> = section
            .rows
            .iter()
            .map(|r| {
                format!(
                    "        {{\"name\": {}, \"value\": {}, \"unit\": {}, \"baseline\": {}, \"ratio\": {}, \"better\": {}}}",
                    json_string(&r.name),
                    json_number(Some(r.value)),
                    json_string(&r.unit),
                    json_number(r.baseline),
                    json_number(r.ratio()),
                    match r.better {
                        Better::Neither => "null".into(),
                        b => json_string(b.word()),
                    }
                )
            })
            .collect();
        let _ = write!(
            out,
            "{}\n    {{\n      \"name\": {},\n      \"title\": {},\n      \"baseline\": {},\n      \"notes\": {},\n      \"failures\": {},\n      \"rows\": [\n{}\n      ]\n    }}",
            if i == 0 { "" } else { "," },
            json_string(&section.name),
            json_string(&section.title),
            json_string(&section.baseline),
            json_strings(&section.notes),
            json_strings(&section.failures),
            rows.join(",\n")
        );
    }
    out.push_str("\n  ]\n}\n");
    out
}

/// `target/mote/bench`.
pub fn dir() -> PathBuf {
    crate::mote_dir().join("bench")
}

/// Writes `report.md` and `report.json` into `dir`; returns their paths.
pub fn write(report: &Report, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let md = dir.join("report.md");
    let js = dir.join("report.json");
    std::fs::write(&md, markdown(report)).map_err(|e| format!("write {}: {e}", md.display()))?;
    std::fs::write(&js, json(report)).map_err(|e| format!("write {}: {e}", js.display()))?;
    Ok((md, js))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Section {
        Section {
            name: "echo".into(),
            title: "apps/echo vs Linux".into(),
            baseline: "a Linux PVH guest".into(),
            notes: vec!["median of 3".into()],
            rows: vec![
                Row::new("TCP echo", 2.0, "MB/s", Better::Higher).baseline(1.0),
                Row::new("memory", 16.0, "MiB", Better::Lower).baseline(96.0).decimals(0),
                Row::new("equal \"builds\"", 1.0, "yes=1", Better::Neither).decimals(0),
            ],
            failures: vec!["Linux round 2: timeout".into()],
        }
    }

    #[test]
    fn table_has_value_baseline_ratio_and_direction() {
        let t = table(&sample());
        let echo = t.lines().find(|l| l.starts_with("TCP echo")).unwrap();
        assert!(
            echo.contains("2.00") && echo.contains("1.00") && echo.trim_end().ends_with("2.00  higher"),
            "{echo}"
        );
        let memory = t.lines().find(|l| l.starts_with("memory")).unwrap();
        assert!(
            memory.contains(" 16 ") && memory.contains(" 96 ") && memory.ends_with("0.17  lower"),
            "{memory}"
        );
        let ends: Vec<usize> =
            t.lines().map(|l| l.find(" higher").or(l.find(" lower")).unwrap_or(0)).collect();
        assert_eq!(ends[1], ends[2], "the ratio column ends at the same place:\n{t}");
    }

    #[test]
    fn text_and_markdown_carry_notes_and_failures() {
        let s = sample();
        let text = text(&s);
        assert!(text.starts_with("## echo: apps/echo vs Linux\nbaseline: a Linux PVH guest"), "{text}");
        assert!(text.contains("- median of 3") && text.contains("NOT MEASURED: Linux round 2"), "{text}");
        let md = markdown(&Report { environment: "QEMU".into(), sections: vec![s] });
        assert!(md.contains("environment: QEMU") && md.contains("```\nmetric"), "{md}");
        assert!(md.contains("- **not measured**: Linux round 2: timeout"), "{md}");
    }

    #[test]
    fn json_has_every_field_and_escapes() {
        let mut s = sample();
        s.rows.push(Row::new("nan", f64::NAN, "s", Better::Lower).baseline(0.0));
        let j = json(&Report { environment: "a \"b\"\n".into(), sections: vec![s] });
        assert!(j.contains(r#""environment": "a \"b\"\n""#), "{j}");
        assert!(
            j.contains(r#"{"name": "TCP echo", "value": 2, "unit": "MB/s", "baseline": 1, "ratio": 2, "better": "higher"}"#),
            "{j}"
        );
        assert!(j.contains(r#""name": "equal \"builds\"", "value": 1, "unit": "yes=1", "baseline": null, "ratio": null, "better": null"#), "{j}");
        assert!(j.contains(r#""value": null, "unit": "s", "baseline": 0, "ratio": null"#), "{j}");
        assert!(j.contains(r#""failures": ["Linux round 2: timeout"]"#), "{j}");
    }
}
