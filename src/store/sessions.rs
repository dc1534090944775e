//! Web console sessions, found by the SHA-256 of the cookie's id; a session
//! idle past its limit, or whose token was revoked or expired, is gone.

use sqlx::Row;

use super::{Store, StoreError, now_ms};
use crate::domain::Role;

/// A live console session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub actor: String,
    pub role: Role,
    pub csrf: String,
}

/// A session to store.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub id_sha256: &'a str,
    pub actor: &'a str,
    pub role: Role,
    pub token_id: Option<i64>,
    pub csrf: &'a str,
}

/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY_MS: i64 = 30_000;

impl Store {
    pub async fn add_session(&self, s: &NewSession<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, actor, role, token_id, csrf, created_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id_sha256)
        .bind(s.actor)
        .bind(s.role.as_str())
        .bind(s.token_id)
        .bind(s.csrf)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session seen within `idle_ms`, whose token (when it has one) is
    /// still live; it counts as seen now.
    pub async fn session(
        &self,
        id_sha256: &str,
        idle_ms: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT s.actor, s.role, s.csrf, s.last_seen_at FROM console_sessions s
             LEFT JOIN api_tokens t ON t.id = s.token_id
             WHERE s.id_sha256 = $1 AND s.last_seen_at >= $2
               AND (s.token_id IS NULL
                    OR (t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $3)))",
        )
        .bind(id_sha256)
        .bind(now.saturating_sub(idle_ms))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let last_seen: i64 = row.try_get("last_seen_at")?;
        if now - last_seen >= TOUCH_EVERY_MS {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $1 WHERE id_sha256 = $2")
                .bind(now)
                .bind(id_sha256)
                .execute(&self.pool)
                .await?;
        }
        let role: String = row.try_get("role")?;
        Ok(Some(SessionRow {
            actor: row.try_get("actor")?,
            role: role
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("console_sessions.role: {e}")))?,
            csrf: row.try_get("csrf")?,
        }))
    }

    /// Signs a session out; also drops every session idle past `idle_ms`.
    pub async fn end_session(&self, id_sha256: &str, idle_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1 OR last_seen_at < $2")
            .bind(id_sha256)
            .bind(now_ms().saturating_sub(idle_ms))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
