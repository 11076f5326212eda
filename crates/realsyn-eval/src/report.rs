//! `realsyn eval report`: our results in the layout of the paper's Tables 1-4 (and
//! 9-11, the model-scale versions), with the paper's own rows (`eval/paper/*.tsv`)
//! above ours. Cells are percentages; a benchmark with no result is `-`, and the
//! average is over the benchmarks present (the count is shown when some are missing).

use std::fmt::Write;

use crate::registry::{Registry, Suite};
use crate::results::{EvalResult, LINEAR_PROBE, RETRIEVAL, ZEROSHOT};

const PAPER: [(u32, &str); 7] = [
    (1, include_str!("../../../eval/paper/table1.tsv")),
    (2, include_str!("../../../eval/paper/table2.tsv")),
    (3, include_str!("../../../eval/paper/table3.tsv")),
    (4, include_str!("../../../eval/paper/table4.tsv")),
    (9, include_str!("../../../eval/paper/table9.tsv")),
    (10, include_str!("../../../eval/paper/table10.tsv")),
    (11, include_str!("../../../eval/paper/table11.tsv")),
];

/// One of the paper's tables: its caption, column names and rows (group, name, cells).
pub struct PaperTable {
    pub number: u32,
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, String, Vec<String>)>,
}

pub fn paper_table(number: u32) -> Option<PaperTable> {
    let text = PAPER.iter().find(|(n, _)| *n == number)?.1;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let caption = lines.next()?.trim_start_matches("# ").to_string();
    let header: Vec<String> = lines.next()?.split('\t').map(String::from).collect();
    let rows = lines
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                c[0].to_string(),
                c[1].to_string(),
                c[2..].iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
    Some(PaperTable {
        number,
        caption,
        columns: header[2..].to_vec(),
        rows,
    })
}

/// The kinds of table: which suite, which task, and the paper's tables of that kind.
pub const KINDS: [(&str, Suite, &str, &[u32]); 4] = [
    ("Linear probe", Suite::LinearProbe, LINEAR_PROBE, &[1, 9]),
    ("Zero-shot transfer", Suite::ZeroShot, ZEROSHOT, &[2, 10]),
    ("Zero-shot retrieval", Suite::Retrieval, RETRIEVAL, &[3]),
    (
        "Zero-shot robustness",
        Suite::Robustness,
        ZEROSHOT,
        &[4, 11],
    ),
];

/// Our row for one table kind: a cell per column (percent) and the average.
pub fn our_row(
    registry: &Registry,
    suite: Suite,
    task: &str,
    results: &[EvalResult],
) -> Vec<Option<f64>> {
    let find = |dataset: &str| {
        results
            .iter()
            .find(|r| r.dataset == dataset && r.task == task)
    };
    if suite == Suite::Retrieval {
        let mut cells = Vec::new();
        // The paper's "text retrieval" (image->text) is CLIP_benchmark's text_retrieval.
        for key in ["text_retrieval_recall", "image_retrieval_recall"] {
            for bench in registry.suite(Suite::Retrieval) {
                for k in [1, 5, 10] {
                    cells.push(
                        find(&bench.name)
                            .and_then(|r| r.metric(&format!("{key}@{k}")))
                            .map(|v| 100.0 * v),
                    );
                }
            }
        }
        return cells;
    }
    let mut cells: Vec<Option<f64>> = registry
        .suite(suite)
        .iter()
        .map(|b| {
            find(&b.name)
                .and_then(|r| r.metric(b.metric.key()))
                .map(|v| 100.0 * v)
        })
        .collect();
    let present: Vec<f64> = cells.iter().flatten().copied().collect();
    cells.push((!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64));
    cells
}

/// The average of a table kind over the benchmarks present, with how many there are.
pub fn suite_average(
    registry: &Registry,
    suite: Suite,
    task: &str,
    results: &[EvalResult],
) -> Option<(f64, usize)> {
    let row = our_row(registry, suite, task, results);
    let per_dataset = if suite == Suite::Retrieval {
        &row[..]
    } else {
        &row[..row.len() - 1]
    };
    let present: Vec<f64> = per_dataset.iter().flatten().copied().collect();
    (!present.is_empty()).then(|| {
        (
            present.iter().sum::<f64>() / present.len() as f64,
            present.len(),
        )
    })
}

/// The report: for each kind with at least one of our results, the paper's tables of
/// that kind followed by our rows. `runs` are (label, results).
pub fn render(registry: &Registry, runs: &[(String, Vec<EvalResult>)]) -> String {
    let mut out = String::new();
    for (title, suite, task, tables) in KINDS {
        let rows: Vec<(String, Vec<Option<f64>>)> = runs
            .iter()
            .map(|(label, rs)| (label.clone(), our_row(registry, suite, task, rs)))
            .filter(|(_, cells)| cells.iter().any(Option::is_some))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let Some(first) = paper_table(tables[0]) else {
            continue;
        };
        let n_cols = first.columns.len();
        let width = 9usize;
        let _ = writeln!(out, "## {title}");
        let mut line = format!("{:<10} {:<22}", "", "");
        for c in &first.columns {
            let short: String = c.chars().take(width - 1).collect();
            let _ = write!(line, "{short:>width$}");
        }
        let _ = writeln!(out, "{line}");
        for t in tables {
            let Some(table) = paper_table(*t) else {
                continue;
            };
            let _ = writeln!(out, "paper Table {}: {}", table.number, table.caption);
            for (group, name, cells) in &table.rows {
                let mut line = format!("{group:<10} {name:<22}");
                for c in cells {
                    let _ = write!(line, "{c:>width$}");
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = writeln!(out, "ours:");
        for (label, cells) in rows {
            let missing = cells
                .iter()
                .take(n_cols.saturating_sub(1))
                .filter(|c| c.is_none())
                .count();
            let mut line = format!("{:<10} {:<22}", "", truncate(&label, 22));
            for c in &cells {
                match c {
                    Some(v) => {
                        let _ = write!(line, "{v:>width$.1}");
                    }
                    None => {
                        let _ = write!(line, "{:>width$}", "-");
                    }
                }
            }
            if suite != Suite::Retrieval && missing > 0 {
                let _ = write!(
                    line,
                    "   (average of {} of {})",
                    n_cols - 1 - missing,
                    n_cols - 1
                );
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    if out.is_empty() {
        out.push_str("no CLIP_benchmark result files of the paper's benchmarks were found\n");
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_tables_have_the_registrys_columns() {
        let reg = Registry::builtin();
        for (_, suite, _, tables) in KINDS {
            for t in tables {
                let table = paper_table(*t).unwrap();
                let expected: Vec<String> = if suite == Suite::Retrieval {
                    table.columns.clone()
                } else {
                    reg.suite(suite)
                        .iter()
                        .map(|b| b.column.clone())
                        .chain(["Average".to_string()])
                        .collect()
                };
                assert_eq!(table.columns, expected, "table {t}");
                assert!(
                    table.rows.iter().all(|r| r.2.len() == table.columns.len()),
                    "table {t}"
                );
            }
        }
        // Table 1, RealSyn 100M: the paper's 75.8 average is the mean of its 20 cells.
        let t1 = paper_table(1).unwrap();
        let row = t1
            .rows
            .iter()
            .find(|r| r.0 == "100M" && r.1 == "RealSyn")
            .unwrap();
        let cells: Vec<f64> = row.2.iter().map(|c| c.parse().unwrap()).collect();
        let mean = cells[..20].iter().sum::<f64>() / 20.0;
        assert!((mean - cells[20]).abs() < 0.06, "{mean} vs {}", cells[20]);
    }
}

/// A metric of one run as a fraction, by name: `linear-probe-avg`, `zero-shot-avg`,
/// `robustness-avg`, `retrieval-avg` (averages over the benchmarks present), or
/// `DATASET:TASK:KEY` (e.g. `cifar10:zeroshot_classification:acc1`).
pub fn metric_by_name(registry: &Registry, name: &str, results: &[EvalResult]) -> Option<f64> {
    let avg = |suite, task| suite_average(registry, suite, task, results).map(|(v, _)| v / 100.0);
    match name {
        "linear-probe-avg" => avg(Suite::LinearProbe, LINEAR_PROBE),
        "zero-shot-avg" => avg(Suite::ZeroShot, ZEROSHOT),
        "robustness-avg" => avg(Suite::Robustness, ZEROSHOT),
        "retrieval-avg" => avg(Suite::Retrieval, RETRIEVAL),
        other => {
            let mut parts = other.splitn(3, ':');
            let (d, t, k) = (parts.next()?, parts.next()?, parts.next()?);
            results
                .iter()
                .find(|r| r.dataset == d && r.task == t)?
                .metric(k)
        }
    }
}
