use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::table::catalog::Column;
use crate::table::config::KeyColumn;

fn table(key: &[(&str, bool)]) -> (TableConfig, Catalog) {
    let config = crate::config::Config::parse(
        "t.yaml",
        "postgres: {main: {url: 'postgres://pagegate@127.0.0.1/app'}}\nroutes: []\n",
    )
    .expect("valid");
    let table = TableConfig {
        database: "main".to_owned(),
        postgres: Arc::clone(config.postgres.get("main").expect("declared")),
        codec: Arc::new(crate::cursor::test_codec()),
        name: "app.events".to_owned(),
        columns: vec![
            "id".to_owned(),
            "created_at".to_owned(),
            "amount".to_owned(),
        ],
        default_fields: vec![],
        key: key
            .iter()
            .map(|(c, d)| KeyColumn {
                column: (*c).to_owned(),
                descending: *d,
            })
            .collect(),
        filters: Default::default(),
        default_limit: 10,
        max_limit: 100,
        page_bytes: 8 << 20,
        formats: vec![],
        chunk_rows: std::num::NonZeroU32::new(100).expect("n"),
        chunk_bytes: 1 << 20,
        parallel: std::num::NonZeroUsize::MIN,
        scope: None,
        on_missing_index: crate::table::config::MissingIndex::Refuse,
        via: crate::table::config::ExportVia::Copy,
        max_connections: None,
        places: Default::default(),
    };
    let column = |t: &str| Column {
        sql_type: t.to_owned(),
        base: t.to_owned(),
        declared: t.to_owned(),
        bounded: true,
        cast: match t {
            "bigint" => "pg_catalog.int8",
            "numeric" => "pg_catalog.\"numeric\"",
            _ => "pg_catalog.timestamptz",
        }
        .to_owned(),
        element: None,
        array: false,
        composite: false,
        json: false,
        not_null: true,
    };
    let catalog = Catalog {
        columns: HashMap::from([
            ("id".to_owned(), column("bigint")),
            ("created_at".to_owned(), column("timestamp with time zone")),
            ("amount".to_owned(), column("numeric")),
        ]),
        warnings: Vec::new(),
    };
    (table, catalog)
}

#[test]
fn values_are_parameters_and_keys_compare_as_a_row() {
    let (table, catalog) = table(&[("created_at", false), ("id", false)]);
    let filters = [
        Filter {
            column: "amount".to_owned(),
            op: FilterOp::Gte,
            values: vec!["1'; DROP TABLE x; --".to_owned()],
        },
        Filter {
            column: "id".to_owned(),
            op: FilterOp::In,
            values: vec!["1".to_owned(), "2".to_owned()],
        },
        Filter {
            column: "amount".to_owned(),
            op: FilterOp::Is,
            values: vec!["not_null".to_owned()],
        },
    ];
    let after = ["2026-01-01 00:00:00+00".to_owned(), "7".to_owned()];
    let s = select(
        &table,
        &catalog,
        &["id".to_owned(), "amount".to_owned()],
        Shape::Json,
        &filters,
        Some(&after),
        11,
    );
    assert_eq!(
        s.sql,
        "SELECT json_build_object('id', \"id\", 'amount', \"amount\"::text)::text, \"created_at\"::text, \"id\"::text \
         FROM \"app\".\"events\" AS r WHERE \"amount\" >= ($1::text)::pg_catalog.\"numeric\" \
         AND \"id\" IN (($2::text)::pg_catalog.int8, ($3::text)::pg_catalog.int8) AND \"amount\" IS NOT NULL \
         AND (\"created_at\", \"id\") > (($4::text)::pg_catalog.timestamptz, ($5::text)::pg_catalog.int8) \
         ORDER BY r.\"created_at\", r.\"id\" LIMIT ($6::text)::pg_catalog.int8"
    );
    assert_eq!(
        s.params,
        [
            "1'; DROP TABLE x; --",
            "1",
            "2",
            "2026-01-01 00:00:00+00",
            "7",
            "11"
        ]
    );
}

#[test]
fn mixed_directions_expand_into_alternatives() {
    let (table, catalog) = table(&[("created_at", true), ("id", false)]);
    let after = ["t".to_owned(), "7".to_owned()];
    let s = select(
        &table,
        &catalog,
        &["id".to_owned()],
        Shape::Csv,
        &[],
        Some(&after),
        5,
    );
    assert!(
        s.sql.contains(
            "WHERE \"created_at\" <= ($1::text)::pg_catalog.timestamptz AND ((\"created_at\" < ($1::text)::pg_catalog.timestamptz) OR (\"created_at\" = ($1::text)::pg_catalog.timestamptz AND \"id\" > ($2::text)::pg_catalog.int8)) ORDER BY r.\"created_at\" DESC, r.\"id\""
        ),
        "{}",
        s.sql
    );
    assert!(
        s.sql
            .starts_with("SELECT r.\"id\"::text, concat(\"created_at\"), concat(\"id\") FROM")
    );
}

#[test]
fn csv_renders_timestamps_as_rfc_3339_and_ndjson_uses_row_to_json() {
    let (table, catalog) = table(&[("id", false)]);
    let columns = [
        "created_at".to_owned(),
        "amount".to_owned(),
        "id".to_owned(),
    ];
    let csv = select(&table, &catalog, &columns, Shape::Csv, &[], None, 10);
    assert!(
        csv.sql.starts_with(
            "SELECT CASE WHEN r.\"created_at\" >= '0001-01-01' AND r.\"created_at\" < '10000-01-01' \
             THEN replace(r.\"created_at\"::text, ' ', 'T') || ':00' ELSE r.\"created_at\"::text END, \
             r.\"amount\"::text, r.\"id\"::text, concat(\"id\") FROM"
        ),
        "{}",
        csv.sql
    );
    let rows = select(&table, &catalog, &columns, Shape::Row, &[], None, 10);
    assert_eq!(
        rows.sql,
        "SELECT row_to_json(j.*)::text, concat(j.\"id\") FROM (SELECT r.\"created_at\", r.\"amount\"::text AS \"amount\", r.\"id\" \
         FROM \"app\".\"events\" AS r ORDER BY r.\"id\" LIMIT ($1::text)::pg_catalog.int8) AS j"
    );
}

#[test]
fn copy_inlines_values_as_literals_that_cannot_end_early() {
    let (table, catalog) = table(&[("created_at", false), ("id", false)]);
    let filters = [
        Filter {
            column: "amount".to_owned(),
            op: FilterOp::Gte,
            values: vec!["1'; DROP TABLE x; --".to_owned()],
        },
        Filter {
            column: "id".to_owned(),
            op: FilterOp::Eq,
            values: vec!["a\\' OR true --".to_owned()],
        },
    ];
    let after = ["2024-05-01T10:00:00.5+00:00".to_owned(), "42".to_owned()];
    let columns = ["id".to_owned(), "created_at".to_owned()];
    let copy = select(
        &table,
        &catalog,
        &columns,
        Shape::CopyCsv,
        &filters,
        Some(&after),
        10_000,
    );
    assert!(copy.params.is_empty());
    assert_eq!(
        copy.sql,
        "COPY (SELECT r.\"id\", r.\"created_at\" FROM \"app\".\"events\" AS r WHERE \"amount\" >= (convert_from(decode('31273b2044524f50205441424c4520783b202d2d', 'hex'), 'UTF8')::text)::pg_catalog.\"numeric\" \
         AND \"id\" = (convert_from(decode('615c27204f522074727565202d2d', 'hex'), 'UTF8')::text)::pg_catalog.int8 \
         AND (\"created_at\", \"id\") > (('2024-05-01T10:00:00.5+00:00'::text)::pg_catalog.timestamptz, ('42'::text)::pg_catalog.int8) \
         ORDER BY r.\"created_at\", r.\"id\" LIMIT ('10000'::text)::pg_catalog.int8) TO STDOUT (FORMAT csv)"
    );
}

#[test]
fn literals_cannot_end_early() {
    assert_eq!(
        literal("2024-05-01 10:00:00+00"),
        "'2024-05-01 10:00:00+00'"
    );
    assert_eq!(literal("$1 \"x\""), "'$1 \"x\"'");
    assert_eq!(
        literal("a'b\\c\0"),
        "convert_from(decode('6127625c6300', 'hex'), 'UTF8')"
    );
}

#[test]
fn a_range_is_bounded_on_both_sides_and_its_end_found_by_an_index_walk() {
    let (table, catalog) = table(&[("created_at", false), ("id", false)]);
    let (after, until) = (
        ["a".to_owned(), "1".to_owned()],
        ["b".to_owned(), "2".to_owned()],
    );
    let bounds = Bounds {
        after: Some(&after),
        until: Some(&until),
    };
    let columns = ["id".to_owned()];
    let s = select_within(&table, &catalog, &columns, Shape::Csv, &[], bounds, 5);
    assert!(
        s.sql.contains(
            "WHERE (\"created_at\", \"id\") > (($1::text)::pg_catalog.timestamptz, ($2::text)::pg_catalog.int8) \
             AND (\"created_at\", \"id\") <= (($3::text)::pg_catalog.timestamptz, ($4::text)::pg_catalog.int8) \
             ORDER BY r.\"created_at\", r.\"id\" LIMIT ($5::text)::pg_catalog.int8"
        ),
        "{}",
        s.sql
    );
    assert_eq!(s.params, ["a", "1", "b", "2", "5"]);
    // Mixed directions: the first column's bound, and no row after `until`.
    let (table, catalog) = self::table(&[("created_at", true), ("id", false)]);
    let bounds = Bounds {
        after: None,
        until: Some(&until),
    };
    let s = select_within(&table, &catalog, &columns, Shape::Csv, &[], bounds, 5);
    assert!(
        s.sql.contains(
            "WHERE \"created_at\" >= ($1::text)::pg_catalog.timestamptz AND NOT ((\"created_at\" < ($1::text)::pg_catalog.timestamptz) \
             OR (\"created_at\" = ($1::text)::pg_catalog.timestamptz AND \"id\" > ($2::text)::pg_catalog.int8)) ORDER BY"
        ),
        "{}",
        s.sql
    );
    // The end of a range: the key `offset` rows on, filtered, each column as text as the
    // chunks read it (COPY: as it writes them; queries: the output function's).
    let filters = [Filter {
        column: "amount".to_owned(),
        op: FilterOp::Gt,
        values: vec!["0".to_owned()],
    }];
    let queried = boundary(&table, &catalog, &filters, Some(&after), 9_999, Shape::Csv);
    assert!(
        queried
            .sql
            .starts_with("SELECT concat(r.\"created_at\"), concat(r.\"id\") FROM"),
        "{}",
        queried.sql
    );
    let s = boundary(
        &table,
        &catalog,
        &filters,
        Some(&after),
        9_999,
        Shape::CopyCsv,
    );
    assert_eq!(
        s.sql,
        "SELECT concat(r.\"created_at\"), concat(r.\"id\") FROM \"app\".\"events\" AS r \
         WHERE \"amount\" > ($1::text)::pg_catalog.\"numeric\" AND \"created_at\" <= ($2::text)::pg_catalog.timestamptz \
         AND ((\"created_at\" < ($2::text)::pg_catalog.timestamptz) OR (\"created_at\" = ($2::text)::pg_catalog.timestamptz \
         AND \"id\" > ($3::text)::pg_catalog.int8)) ORDER BY r.\"created_at\" DESC, r.\"id\" \
         LIMIT 1 OFFSET ($4::text)::pg_catalog.int8"
    );
    assert_eq!(s.params, ["0", "a", "1", "9999"]);
}
