//! Reading an import: a JSON array of prospects or a CSV file with a header
//! row, into validated rows and the rows refused with their reason.
//!
//! Rows are numbered from 1 in the order sent (a CSV's header is not a row).
//! A file that cannot be read at all (malformed CSV, not JSON, no `email`
//! column, no rows or more than [`MAX_ROWS`]) refuses the whole import; a
//! row that breaks a rule is reported in `invalid` and the others are
//! imported.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{
    db::prospects::NewProspect,
    error::ApiError,
    validation::{check_chars, field_problem, is_plausible_email, parse_json},
};

/// Most rows in one import.
pub const MAX_ROWS: usize = 500;
/// Longest name, company, title or industry.
pub const FIELD_MAX: usize = 200;
/// Longest website or LinkedIn URL.
pub const URL_MAX: usize = 500;

/// One row as sent: every field text, unknown fields ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ProspectRow {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    industry: Option<String>,
    #[serde(default)]
    linkedin_url: Option<String>,
}

/// How the JSON import is documented: 1 to [`MAX_ROWS`] rows (the handler
/// reads a `Vec<ProspectRow>` and counts them).
#[derive(Debug, utoipa::ToSchema)]
#[schema(min_items = 1, max_items = 500)]
#[allow(dead_code)]
pub struct ProspectRows(Vec<ProspectRow>);

/// A refused row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvalidRow {
    /// Its number, from 1.
    pub row: usize,
    /// Why it was refused.
    pub reason: String,
}

/// A read import: the valid rows with their numbers, and the refused ones.
#[derive(Debug, Default)]
pub struct Rows {
    /// Valid rows, in order, with their row numbers.
    pub valid: Vec<(usize, NewProspect)>,
    /// Refused rows.
    pub invalid: Vec<InvalidRow>,
}

/// Reads a JSON array of prospect objects.
pub fn from_json(body: &[u8]) -> Result<Rows, ApiError> {
    let rows: Vec<ProspectRow> = parse_json(body)?;
    check_count(rows.len())?;
    Ok(validate(rows))
}

/// Reads a CSV file with a header row naming the columns (`email` required;
/// `first_name`, `last_name`, `company`, `title`, `website`, `industry`,
/// `linkedin_url` optional; others ignored; names case-insensitive).
pub fn from_csv(body: &[u8]) -> Result<Rows, ApiError> {
    let malformed = |err: csv::Error| {
        let at = err
            .position()
            .map(|p| format!(" at line {}", p.line()))
            .unwrap_or_default();
        let what = match err.kind() {
            csv::ErrorKind::Utf8 { .. } => "is not UTF-8".to_owned(),
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("has a row of {len} fields where the header has {expected_len}"),
            _ => format!("cannot be read: {err}"),
        };
        field_problem(
            StatusCode::BAD_REQUEST,
            "body",
            format!("the CSV{at} {what}"),
        )
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader.headers().map_err(malformed)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
    };
    let email = column("email").ok_or_else(|| {
        field_problem(
            StatusCode::BAD_REQUEST,
            "email",
            "the CSV's header row has no `email` column",
        )
    })?;
    let columns = [
        column("first_name"),
        column("last_name"),
        column("company"),
        column("title"),
        column("website"),
        column("industry"),
        column("linkedin_url"),
    ];
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(malformed)?;
        if rows.len() == MAX_ROWS {
            return Err(too_many());
        }
        let get = |at: Option<usize>| at.and_then(|i| record.get(i)).map(str::to_owned);
        let [
            first_name,
            last_name,
            company,
            title,
            website,
            industry,
            linkedin_url,
        ] = columns.map(get);
        rows.push(ProspectRow {
            email: get(Some(email)),
            first_name,
            last_name,
            company,
            title,
            website,
            industry,
            linkedin_url,
        });
    }
    check_count(rows.len())?;
    Ok(validate(rows))
}

fn too_many() -> ApiError {
    field_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "body",
        format!("at most {MAX_ROWS} prospects per import; split the file"),
    )
}

fn check_count(rows: usize) -> Result<(), ApiError> {
    match rows {
        0 => Err(field_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
            "at least one prospect is required",
        )),
        n if n > MAX_ROWS => Err(too_many()),
        _ => Ok(()),
    }
}

/// Splits `rows` into valid prospects and refused rows.
fn validate(rows: Vec<ProspectRow>) -> Rows {
    let mut out = Rows::default();
    for (index, row) in rows.into_iter().enumerate() {
        let number = index + 1;
        match validate_row(row) {
            Ok(prospect) => out.valid.push((number, prospect)),
            Err(reason) => out.invalid.push(InvalidRow {
                row: number,
                reason,
            }),
        }
    }
    out
}

fn validate_row(row: ProspectRow) -> Result<NewProspect, String> {
    let email = row
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or("`email` is required")?;
    if !is_plausible_email(email) {
        return Err(format!("`email` {email:?} is not an email address"));
    }
    let text = |field: &str, value: Option<String>, max: usize| -> Result<Option<String>, String> {
        let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        check_chars(&value, max).map_err(|why| format!("`{field}` {why}"))?;
        Ok(Some(value))
    };
    Ok(NewProspect {
        email: email.to_owned(),
        first_name: text("first_name", row.first_name, FIELD_MAX)?,
        last_name: text("last_name", row.last_name, FIELD_MAX)?,
        company: text("company", row.company, FIELD_MAX)?,
        title: text("title", row.title, FIELD_MAX)?,
        website: text("website", row.website, URL_MAX)?,
        industry: text("industry", row.industry, FIELD_MAX)?,
        linkedin_url: text("linkedin_url", row.linkedin_url, URL_MAX)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_extra_columns_and_bad_rows() {
        let csv = "Email,First_Name,phone\nann@x.io,Ann,1\n,Bob,2\nnot-an-email,C,3\n";
        let rows = from_csv(csv.as_bytes()).unwrap();
        assert_eq!(rows.valid.len(), 1);
        assert_eq!(rows.valid[0].0, 1);
        assert_eq!(rows.valid[0].1.first_name.as_deref(), Some("Ann"));
        let numbers: Vec<usize> = rows.invalid.iter().map(|r| r.row).collect();
        assert_eq!(numbers, vec![2, 3]);
    }

    #[test]
    fn unreadable_csv_refuses_the_import() {
        assert_eq!(
            from_csv(b"name\nann\n").unwrap_err().0.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            from_csv(b"email,name\nann@x.io\n").unwrap_err().0.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            from_csv(b"email\n").unwrap_err().0.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let many: String = std::iter::once("email\n".to_owned())
            .chain((0..=MAX_ROWS).map(|i| format!("p{i}@x.io\n")))
            .collect();
        assert_eq!(
            from_csv(many.as_bytes()).unwrap_err().0.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn oversize_fields_are_reported_per_row() {
        let long = "x".repeat(FIELD_MAX + 1);
        let body = serde_json::json!([{ "email": "a@x.io", "company": long }]).to_string();
        let rows = from_json(body.as_bytes()).unwrap();
        assert!(rows.valid.is_empty());
        assert!(rows.invalid[0].reason.contains("company"));
    }
}
