//! PostgreSQL: the group's claims, subjects, audit guards and outcomes,
//! each kind in one `UPDATE … FROM (VALUES …) RETURNING id` instead of one
//! statement per write, since every statement is a round trip to the
//! server (BENCHMARKS.md, "PostgreSQL round trips"). Each row keeps its own
//! guard in the join condition, so every write is answered as if it had
//! run alone; two writes that collide (two subjects of one person) break
//! a unique index, and the group is written again one write at a time.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::Row;

use super::{Answer, Pending, RunWrite};
use crate::store::sql::Params;
use crate::store::{Backend, StoreError};

/// One kind of write sent together.
struct Kind {
    /// The write's row of values, when it is of this kind.
    row: fn(&RunWrite, i64) -> Option<Vec<Bound<'_>>>,
    /// The `VALUES` columns with their types, `id` first.
    columns: &'static [(&'static str, &'static str)],
    /// `SET …` and the condition beside `requests.id = v.id`.
    set: &'static LazyLock<String>,
    condition: &'static LazyLock<String>,
    /// The answer of a write whose row came back (or did not).
    answer: fn(bool, &str) -> Answer,
}

enum Bound<'a> {
    Text(Option<&'a str>),
    Owned(String),
    Int(i64),
}

const BACKEND: Backend = Backend::Postgres;

static NOW: LazyLock<&str> = LazyLock::new(|| super::db_now_ms(BACKEND));

static CLAIM_SET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "claim_owner = v.owner, claim_expires_at = {} + v.lease_ms, attempts = requests.attempts + 1",
        *NOW
    )
});
static CLAIM_CONDITION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "requests.outcome IS NULL AND (requests.claim_owner IS NULL OR requests.claim_owner = v.owner OR requests.claim_expires_at < {})",
        *NOW
    )
});
static HELD: LazyLock<String> =
    LazyLock::new(|| "requests.claim_owner = v.owner AND requests.outcome IS NULL".to_owned());
static AUDIT_SET: LazyLock<String> =
    LazyLock::new(|| "claim_owner = requests.claim_owner".to_owned());
static SUBJECT_SET: LazyLock<String> = LazyLock::new(|| "subject = v.subject".to_owned());
/// `SUBJECT_SQL`'s conditions, against the row's own values.
static SUBJECT_CONDITION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} AND NOT EXISTS (SELECT 1 FROM requests o
                            WHERE o.provider = requests.provider
                              AND o.organization_id = requests.organization_id
                              AND o.subject = v.subject AND o.outcome IS NULL AND o.dry_run = 0
                              AND o.id <> v.id)
            AND NOT EXISTS (SELECT 1 FROM requests b
                            WHERE b.batch_id = requests.batch_id AND b.subject = v.subject
                              AND b.provider = requests.provider
                              AND b.organization_id = requests.organization_id
                              AND b.dry_run = 0 AND b.id <> v.id)",
        *HELD
    )
});
static FINISH_SET: LazyLock<String> = LazyLock::new(|| {
    "outcome = v.outcome, roles_removed = v.roles_removed, error_code = v.error_code,
     error_message = v.error_message, finished_at = v.finished_at,
     claim_owner = NULL, claim_expires_at = NULL, attempts = requests.attempts + v.retries"
        .to_owned()
});

const KINDS: [Kind; 4] = [
    Kind {
        row: |w, _| match w {
            RunWrite::Claim {
                id,
                owner,
                lease_ms,
            } => Some(vec![
                Bound::Text(Some(id)),
                Bound::Text(Some(owner)),
                Bound::Int(*lease_ms),
            ]),
            _ => None,
        },
        columns: &[("id", "text"), ("owner", "text"), ("lease_ms", "bigint")],
        set: &CLAIM_SET,
        condition: &CLAIM_CONDITION,
        answer: |came_back, _| Ok(came_back),
    },
    Kind {
        row: |w, _| match w {
            RunWrite::Audit { id, owner } => {
                Some(vec![Bound::Text(Some(id)), Bound::Text(Some(owner))])
            }
            _ => None,
        },
        columns: &[("id", "text"), ("owner", "text")],
        set: &AUDIT_SET,
        condition: &HELD,
        answer: guarded,
    },
    Kind {
        row: |w, _| match w {
            RunWrite::Subject { id, owner, subject } => Some(vec![
                Bound::Text(Some(id)),
                Bound::Text(Some(owner)),
                Bound::Text(Some(subject)),
            ]),
            _ => None,
        },
        columns: &[("id", "text"), ("owner", "text"), ("subject", "text")],
        set: &SUBJECT_SET,
        condition: &SUBJECT_CONDITION,
        answer: |came_back, _| Ok(came_back),
    },
    Kind {
        row: |w, now| match w {
            RunWrite::Finish {
                id,
                owner,
                finish,
                retries,
            } => Some(vec![
                Bound::Text(Some(id)),
                Bound::Text(Some(owner)),
                Bound::Text(Some(finish.outcome.as_str())),
                Bound::Owned(finish.roles_removed.join(";")),
                Bound::Text(finish.error_code.as_deref()),
                Bound::Text(finish.error_message.as_deref()),
                Bound::Int(now),
                Bound::Int(i64::from(*retries)),
            ]),
            _ => None,
        },
        columns: &[
            ("id", "text"),
            ("owner", "text"),
            ("outcome", "text"),
            ("roles_removed", "text"),
            ("error_code", "text"),
            ("error_message", "text"),
            ("finished_at", "bigint"),
            ("retries", "bigint"),
        ],
        set: &FINISH_SET,
        condition: &HELD,
        answer: guarded,
    },
];

/// A claim-guarded write whose row did not come back lost its claim.
fn guarded(came_back: bool, id: &str) -> Answer {
    if came_back {
        Ok(false)
    } else {
        Err(StoreError::ClaimLost(id.to_owned()))
    }
}

/// Answers the group's writes of every kind above, each kind in one
/// statement; writes already answered, and a request's several writes in
/// one group (a renewal beside its finish keeps its order), are left to be
/// written one by one.
pub(super) async fn write(
    tx: &mut sqlx::AnyConnection,
    group: &[Pending],
    answers: &mut [Option<Answer>],
) -> Result<(), StoreError> {
    let alone = written_once(group);
    let now = crate::store::now_ms();
    for kind in &KINDS {
        let picked: Vec<(usize, Vec<Bound<'_>>)> = group
            .iter()
            .enumerate()
            .filter(|(i, _)| alone[*i] && answers[*i].is_none())
            .filter_map(|(i, p)| (kind.row)(&p.write, now).map(|row| (i, row)))
            .collect();
        if picked.is_empty() {
            continue;
        }
        let came_back = update(tx, kind, &picked).await?;
        for (i, _) in picked {
            let id = group[i].write.request_id();
            answers[i] = Some((kind.answer)(came_back.contains(id), id));
        }
    }
    Ok(())
}

/// Whether each write is its request's only one in the group.
fn written_once(group: &[Pending]) -> Vec<bool> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for p in group {
        *count.entry(p.write.request_id()).or_default() += 1;
    }
    group
        .iter()
        .map(|p| count[p.write.request_id()] == 1)
        .collect()
}

/// Runs `kind`'s statement for `rows`; the ids whose row it changed.
async fn update(
    tx: &mut sqlx::AnyConnection,
    kind: &Kind,
    rows: &[(usize, Vec<Bound<'_>>)],
) -> Result<HashSet<String>, StoreError> {
    let mut params = Params::new(BACKEND);
    let tuples = rows
        .iter()
        .map(|_| {
            let row: Vec<String> = kind
                .columns
                .iter()
                .map(|(_, ty)| format!("{}::{ty}", params.one()))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let names: Vec<&str> = kind.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "UPDATE requests SET {} FROM (VALUES {tuples}) AS v({}) WHERE requests.id = v.id AND {} RETURNING requests.id",
        kind.set.as_str(),
        names.join(", "),
        kind.condition.as_str()
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, row) in rows {
        for value in row {
            q = match value {
                Bound::Text(t) => q.bind(*t),
                Bound::Owned(s) => q.bind(s.as_str()),
                Bound::Int(i) => q.bind(*i),
            };
        }
    }
    q.fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use futures::future::join_all;

    use crate::domain::{Outcome, RunMode};
    use crate::store::{
        ClaimResult, Finish, ScratchPostgres, StoreError, SubjectClaim, chunk_of, scratch_batch,
    };

    /// Writes that arrive at once share statements on PostgreSQL; each is
    /// still answered as if it had been written alone: one of two owners
    /// claims a request, one of two requests holds a person, and only the
    /// claim's holder finishes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_sent_together_are_answered_as_if_alone() {
        let Some(pg) =
            ScratchPostgres::create("writes_sent_together_are_answered_as_if_alone").await
        else {
            return;
        };
        let store = &pg.store;
        let batch = scratch_batch(store).await;
        let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let jobs = store
            .write_intake_chunk(&batch, RunMode::Live, None, chunk_of(&users))
            .await
            .unwrap();
        let ids: Vec<String> = jobs.iter().map(|j| j.request_id.clone()).collect();
        let lease = Duration::from_secs(60);

        let claims = join_all(ids.iter().flat_map(|id| {
            ["a", "b"].map(|owner| async move { (id, owner, store.claim(id, owner, lease).await) })
        }))
        .await;
        let mut holder: HashMap<&String, &str> = HashMap::new();
        for (id, owner, claimed) in claims {
            match claimed.unwrap() {
                ClaimResult::Claimed(c) => {
                    assert_eq!(&c.request.id, id);
                    assert_eq!(c.request.claim, owner);
                    assert!(holder.insert(id, owner).is_none(), "two owners hold {id}");
                }
                ClaimResult::HeldBy { remaining_ms } => assert!(remaining_ms > 0),
                other => panic!("{id}: {other:?}"),
            }
        }
        assert_eq!(holder.len(), ids.len(), "every request has one holder");

        // Two requests at a time act for the same person: one of each pair holds them.
        let subjects = join_all(ids.iter().enumerate().map(|(i, id)| {
            let owner = holder[id];
            async move {
                store
                    .claim_subject(id, owner, &format!("person-{}", i / 2))
                    .await
                    .unwrap()
            }
        }))
        .await;
        let taken = subjects
            .iter()
            .filter(|s| matches!(s, SubjectClaim::Taken))
            .count();
        assert_eq!(taken, ids.len() / 2, "{subjects:?}");

        let finish = Finish {
            outcome: Outcome::Succeeded,
            roles_removed: vec!["role_a".into()],
            error_code: None,
            error_message: None,
        };
        let finishes = join_all(ids.iter().flat_map(|id| {
            let finish = &finish;
            ["a", "b"].map(|owner| async move {
                (id, owner, store.finish(id, owner, finish, 0, &[]).await)
            })
        }))
        .await;
        for (id, owner, finished) in finishes {
            if holder[id] == owner {
                finished.unwrap();
            } else {
                assert!(
                    matches!(finished, Err(StoreError::ClaimLost(_))),
                    "{id} finished by {owner}, who does not hold it: {finished:?}"
                );
            }
        }
        for id in &ids {
            let row = store.request(id).await.unwrap().unwrap();
            assert_eq!(row.outcome, Some(Outcome::Succeeded), "{id}");
            assert_eq!(row.attempts, 1, "{id}: one claim taken");
        }
        pg.drop().await;
    }
}
