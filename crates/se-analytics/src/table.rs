//! A CSV table kept as text, with the line number of every row for errors.

use std::io::Read;

use crate::error::{AnalyticsError, Result};

/// One data row: its cells (trimmed) and the line it started on in the file.
#[derive(Debug, Clone)]
pub struct TableRow {
    pub line: u64,
    pub cells: Vec<String>,
}

/// A CSV file with a header line, every cell kept as trimmed text.
#[derive(Debug, Clone)]
pub struct Table {
    source_name: String,
    headers: Vec<String>,
    rows: Vec<TableRow>,
}

impl Table {
    /// Reads a comma-separated table with a header line. `source_name` (such
    /// as the file path) appears in errors.
    ///
    /// # Errors
    /// [`AnalyticsError::Csv`] for malformed CSV and
    /// [`AnalyticsError::EmptyTable`] when there is no data row.
    pub fn from_reader(reader: impl Read, source_name: &str) -> Result<Self> {
        let text = read_with_lf(reader)?;
        let mut csv_reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_slice());
        let headers = csv_reader.headers()?.iter().map(str::to_string).collect();
        let mut rows = Vec::new();
        for record in csv_reader.records() {
            let record = record?;
            let line = record_line(&text, &record);
            rows.push(TableRow {
                line,
                cells: record.iter().map(str::to_string).collect(),
            });
        }
        if rows.is_empty() {
            return Err(AnalyticsError::EmptyTable {
                source_name: source_name.to_string(),
            });
        }
        Ok(Self {
            source_name: source_name.to_string(),
            headers,
            rows,
        })
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    pub fn rows(&self) -> &[TableRow] {
        &self.rows
    }

    /// Finds a column by exact name. `option` names the command-line option or
    /// file that asked for it, for the error message.
    pub fn column_index(&self, name: &str, option: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|header| header == name)
            .ok_or_else(|| AnalyticsError::ColumnNotFound {
                column: name.to_string(),
                option: option.to_string(),
                available: self.headers.clone(),
            })
    }
}

/// Reads all of `reader` with CRLF line ends turned into LF.
///
/// The csv crate (1.4) reports record line numbers one too low when lines end
/// in CRLF, so converting first keeps line numbers in error messages right.
/// The cost is one copy of the file in memory.
pub(crate) fn read_with_lf(mut reader: impl Read) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).map_err(csv::Error::from)?;
    let mut text = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte == b'\r' && bytes.peek() == Some(&b'\n') {
            continue;
        }
        text.push(byte);
    }
    Ok(text)
}

/// Returns the 1-based line on which `record` starts in `text` (which must use
/// LF line ends). The csv crate gives the line where its parse began, which
/// is before any blank lines it skipped, so those are counted here.
pub(crate) fn record_line(text: &[u8], record: &csv::StringRecord) -> u64 {
    let Some(position) = record.position() else {
        return 0;
    };
    let start = usize::try_from(position.byte())
        .unwrap_or(usize::MAX)
        .min(text.len());
    let blank_lines = text[start..]
        .iter()
        .take_while(|&&byte| byte == b'\n')
        .count();
    position.line() + blank_lines as u64
}

/// Parses a cell as a finite number.
///
/// # Errors
/// [`AnalyticsError::MissingValue`] for an empty cell and
/// [`AnalyticsError::InvalidNumber`] for text, NaN or infinity.
pub fn parse_number(cell: &str, line: u64, column: &str) -> Result<f64> {
    if cell.is_empty() {
        return Err(AnalyticsError::MissingValue {
            line,
            column: column.to_string(),
        });
    }
    match cell.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(AnalyticsError::InvalidNumber {
            line,
            column: column.to_string(),
            value: cell.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_file_line_numbers() {
        let table = Table::from_reader("a,b\n1,2\n3,4\n".as_bytes(), "memory").unwrap();
        assert_eq!(table.rows()[1].line, 3);
    }

    #[test]
    fn crlf_rows_keep_line_numbers() {
        let table = Table::from_reader("a,b\r\n1,2\r\n\r\n3,4\r\n".as_bytes(), "memory").unwrap();
        assert_eq!(table.rows()[0].line, 2);
        assert_eq!(table.rows()[1].line, 4);
    }

    #[test]
    fn blank_lines_count_in_line_numbers() {
        let table = Table::from_reader("a,b\n\n1,2\n\n\n3,4\n".as_bytes(), "memory").unwrap();
        assert_eq!(table.rows()[0].line, 3);
        assert_eq!(table.rows()[1].line, 6);
    }

    #[test]
    fn cells_are_trimmed() {
        let table = Table::from_reader("a, b\n 1 ,x \n".as_bytes(), "memory").unwrap();
        assert_eq!(table.headers()[1], "b");
        assert_eq!(table.rows()[0].cells, vec!["1", "x"]);
    }

    #[test]
    fn header_only_table_rejected() {
        let error = Table::from_reader("a,b\n".as_bytes(), "memory").unwrap_err();
        assert!(matches!(error, AnalyticsError::EmptyTable { .. }));
    }

    #[test]
    fn unequal_row_length_rejected() {
        let error = Table::from_reader("a,b\n1,2,3\n".as_bytes(), "memory").unwrap_err();
        assert!(matches!(error, AnalyticsError::Csv(_)));
    }

    #[test]
    fn nan_is_invalid_number() {
        let error = parse_number("NaN", 4, "a").unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::InvalidNumber { line: 4, .. }
        ));
    }
}
