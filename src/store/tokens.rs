//! Personal API tokens: their names, roles and lifetimes, and the SHA-256
//! of each token, never the token itself.

use sqlx::Row;

use super::{Store, StoreError, format_ms, now_ms};
use crate::domain::Role;

/// A personal token as stored and listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// Past its expiry: it no longer signs anyone in.
    pub expired: bool,
}

/// A live token found by its hash, for authentication.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Unix ms; past it the token no longer authenticates.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

/// A new token's record.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: Role,
    pub sha256: &'a str,
    pub expires_at: Option<i64>,
    pub created_by: &'a str,
}

const COLUMNS: &str = "name, role, created_at, created_by, expires_at, last_used_at";

/// `last_used_at` is written at most this often per token, so that a
/// busy client does not make every request a write.
const TOUCH_EVERY_MS: i64 = 60_000;

fn role_of(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("api_tokens.role: {e}")))
}

impl Store {
    /// Stores a new token; false when a live token already has the name
    /// (an expired one gives its name up, and is marked revoked).
    pub async fn add_token(&self, token: &NewToken<'_>) -> Result<bool, StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1
             WHERE name = $2 AND revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $3",
        )
        .bind(now)
        .bind(token.name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let n = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_sha256, created_at, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING",
        )
        .bind(token.name)
        .bind(token.role.as_str())
        .bind(token.sha256)
        .bind(now_ms())
        .bind(token.created_by)
        .bind(token.expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The token whose SHA-256 is `sha256`, revoked or not.
    pub async fn token_by_hash(&self, sha256: &str) -> Result<Option<TokenHolder>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, role, expires_at, revoked_at FROM api_tokens WHERE token_sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenHolder {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                role: role_of(&r.try_get::<String, _>("role")?)?,
                expires_at: r.try_get("expires_at")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// Notes that a token was used (at most once a minute).
    pub async fn touch_token(&self, id: i64) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - TOUCH_EVERY_MS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live tokens by name, after `after` (keyset), at most `limit`.
    pub async fn list_tokens(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_tokens
             WHERE revoked_at IS NULL AND name > $1 ORDER BY name LIMIT $2"
        )))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    name: r.try_get("name")?,
                    role: role_of(&r.try_get::<String, _>("role")?)?,
                    created_at: format_ms(r.try_get("created_at")?),
                    created_by: r.try_get("created_by")?,
                    expired: r
                        .try_get::<Option<i64>, _>("expires_at")?
                        .is_some_and(|at| at <= now_ms()),
                    expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(format_ms),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(format_ms),
                })
            })
            .collect()
    }

    /// Revokes the live token called `name`; false when there is none.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Whether a live, unexpired admin token exists (then the bootstrap
    /// token may be left unset).
    pub async fn has_admin_token(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_tokens
             WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}
