//! Column layout of the plain-text tables, like talosctl's Go `tabwriter` (padding 3,
//! spaces, the last column unpadded).

const PADDING: usize = 3;

pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            // The last cell of a row does not take part in alignment.
            for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                // Cells are single-line; a stray newline would break the layout.
                let cell = cell.replace(['\n', '\t'], " ");
                out.push_str(&cell);
                if i < last {
                    let pad = widths[i] + PADDING - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_tabwriter() {
        let mut t = Table::new(&["NODE", "TAG", "X"]);
        t.row(vec!["10.5.0.2".into(), "v1.12.0".into(), "last".into()]);
        t.row(vec!["n".into(), "v1".into(), "longer last cell".into()]);
        assert_eq!(
            t.render(),
            "NODE       TAG       X\n\
             10.5.0.2   v1.12.0   last\n\
             n          v1        longer last cell\n"
        );
    }
}
