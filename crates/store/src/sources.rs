//! TopoForge data sources: a catalogue of event feeds analysts can point the pipeline at.

use crate::{Store, StoreError};

/// One feed. `kind` is the document's `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub protocol: String,
    pub description: String,
    pub active: bool,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    id: String,
    name: String,
    #[sqlx(rename = "type")]
    kind: String,
    url: String,
    protocol: String,
    description: String,
    active: i64,
    created_at: i64,
}

impl From<SourceRow> for Source {
    fn from(r: SourceRow) -> Self {
        Source {
            id: r.id,
            name: r.name,
            kind: r.kind,
            url: r.url,
            protocol: r.protocol,
            description: r.description,
            active: r.active != 0,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, name, type, url, protocol, description, active, created_at";

/// Every source, by name.
pub async fn list(store: &Store) -> Result<Vec<Source>, StoreError> {
    let rows: Vec<SourceRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM sources ORDER BY name, id"))
            .fetch_all(store.pool())
            .await?;
    Ok(rows.into_iter().map(Source::from).collect())
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Source>, StoreError> {
    let row: Option<SourceRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM sources WHERE id = $1"))
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    Ok(row.map(Source::from))
}

/// Adds a source; an id in use is [`StoreError::Conflict`].
pub async fn insert(store: &Store, s: &Source) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO sources ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.kind)
    .bind(&s.url)
    .bind(&s.protocol)
    .bind(&s.description)
    .bind(i64::from(s.active))
    .bind(s.created_at)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(())
}

/// Inserts the source or refreshes its descriptive fields (keeping `active` and `created_at`): reloading a
/// catalogue is idempotent and does not re-enable feeds an analyst switched off. True when it was new.
pub async fn upsert(store: &Store, s: &Source) -> Result<bool, StoreError> {
    let existed = get(store, &s.id).await?.is_some();
    sqlx::query(&format!(
        "INSERT INTO sources ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, type = excluded.type, url = excluded.url, \
         protocol = excluded.protocol, description = excluded.description"
    ))
    .bind(&s.id)
    .bind(&s.name)
    .bind(&s.kind)
    .bind(&s.url)
    .bind(&s.protocol)
    .bind(&s.description)
    .bind(i64::from(s.active))
    .bind(s.created_at)
    .execute(store.pool())
    .await
    .map_err(StoreError::from_write)?;
    Ok(!existed)
}

/// Deletes the source; false when there was none.
pub async fn delete(store: &Store, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM sources WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDb;

    fn source(id: &str, name: &str) -> Source {
        Source {
            id: id.into(),
            name: name.into(),
            kind: "stream".into(),
            url: "https://example.com/feed".into(),
            protocol: "sse".into(),
            description: String::new(),
            active: true,
            created_at: 5,
        }
    }

    #[tokio::test]
    async fn crud_and_idempotent_upsert() {
        for db in TestDb::all().await {
            let s = &db.store;
            insert(s, &source("b", "Beta")).await.expect("insert");
            let err = insert(s, &source("b", "Again")).await.expect_err("dup");
            assert!(matches!(err, StoreError::Conflict(_)), "{}", db.label);
            assert!(upsert(s, &source("a", "Alpha")).await.expect("new"));
            let mut changed = source("a", "Alpha 2");
            changed.active = false;
            assert!(!upsert(s, &changed).await.expect("again"));
            let all = list(s).await.expect("list");
            assert_eq!(
                all.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
                ["Alpha 2", "Beta"]
            );
            assert!(all[0].active, "upsert keeps the stored active flag");
            assert!(delete(s, "a").await.expect("delete"));
            assert!(!delete(s, "a").await.expect("again"));
            assert!(get(s, "a").await.expect("get").is_none());
        }
    }
}
