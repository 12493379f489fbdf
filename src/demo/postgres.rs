//! `pagegate demo --postgres URL`: the query service beside the HTTP demo. Creates (when
//! absent) and fills `pagegate_demo_events` with the demo's columns, the rows generated inside
//! the database, and serves it at `/db/events` (pages) and `/db/events/export`.

/// The demo table.
pub(crate) const TABLE: &str = "pagegate_demo_events";

/// Creates and fills the demo table when it is absent; returns its row count.
pub async fn prepare(url: &str, rows: u64) -> Result<i64, tokio_postgres::Error> {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let exists: bool = client
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&TABLE])
        .await?
        .get(0);
    if !exists {
        // One transaction: a demo stopped halfway leaves no half-filled, unindexed table.
        let client = client.transaction().await?;
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        client
            .batch_execute(&format!(
                "CREATE TABLE {TABLE} (
                   id bigint PRIMARY KEY, status text NOT NULL, created_at timestamptz NOT NULL,
                   user_id int NOT NULL, message text NOT NULL)"
            ))
            .await?;
        client
            .execute(
                &format!(
                    "INSERT INTO {TABLE}
                     SELECT g, (ARRAY['active','archived','failed','pending'])[1 + g % 4],
                            timestamptz '2026-01-01' + g * interval '3 seconds',
                            (g * 7919) % 100000, 'event number ' || g
                     FROM generate_series(1, $1::int8) g"
                ),
                &[&rows],
            )
            .await?;
        client
            .batch_execute(&format!(
                "CREATE INDEX ON {TABLE} (created_at, id);
                 CREATE INDEX ON {TABLE} (status, created_at, id);
                 ANALYZE {TABLE};"
            ))
            .await?;
        client.commit().await?;
    }
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
        .await?
        .get(0))
}

/// The YAML the demo config gets for the table route (after its `routes` list) and its
/// database.
pub fn yaml(url: &str) -> String {
    format!(
        "
  # The query service: the same rows straight from PostgreSQL, keyset-paged and exported.
  - name: db-events
    path: /db/events
    methods: [GET]
    table:
      database: demo
      name: {TABLE}
      columns: [id, status, created_at, user_id, message]
      key: [created_at, id]
      filters: {{status: [eq, in], user_id: [eq], created_at: [gte, lt]}}
    limits:
      concurrency: {{per_client: 2}}

postgres:
  demo:
    url: '{}'
",
        url.replace('\'', "''")
    )
}

/// The commands that show the query service.
pub(crate) fn instructions(proxy: std::net::SocketAddr, rows: i64) -> String {
    format!(
        "
  # the query service: {rows} rows of {TABLE}, straight from PostgreSQL
  curl -s 'http://{proxy}/db/events?fields=id,status&status=eq.active&limit=3'
  curl -s 'http://{proxy}/db/events/export?format=csv' | wc -l
  curl -s 'http://{proxy}/db/events/export?format=ndjson&created_at=lt.2026-01-01T00:01:00Z'
"
    )
}
