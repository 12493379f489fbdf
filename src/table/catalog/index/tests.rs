use super::names;

#[test]
fn a_condition_names_a_column_as_a_whole_word() {
    assert!(names(
        "(ROW(created_at, id) > ROW(($2)::timestamptz, ($3)::int8))",
        "id"
    ));
    assert!(names(
        "((\"Tenant\" = ($1)::text) AND (\"Key\" > ($2)::text))",
        "Key"
    ));
    assert!(!names("(tenant_id = ($1)::text)", "id"));
    assert!(!names("(ids > ($1)::int8)", "id"));
}
