//! What the SQLite and Postgres stores share: every operation, written once in SQL both dialects
//! accept (`$N` parameters, `ON CONFLICT`, `RETURNING`), and the conversions between rows and
//! records. [`sql_store!`] stamps the [`Store`](super::Store) implementation out for each backend;
//! the backends keep only what differs: connecting, the schema, locking, and (Postgres) telling
//! other replicas.

use super::{StoreError, StoreFailure};
use crate::core::email::Email;
use crate::core::policy::Visibility;

/// A failure of the backend. A broken constraint (a viewer for a missing app) is not a passing
/// outage, since asking again would not help: it is [`StoreError::Corrupt`].
pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() || db.is_check_violation() => {
            StoreError::Corrupt(StoreFailure::caused_by(db.message().to_owned(), e))
        }
        _ => StoreError::Unavailable(StoreFailure::caused_by(e.to_string(), e)),
    }
}

/// What a redemption whose commit's outcome stays unknown past its `answer_by` says.
pub(super) const UNANSWERED_COMMIT: &str =
    "the commit of a link's use went unanswered: whether the link was used is unknown";

pub(super) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(StoreFailure::new(what))
}

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit the store")))
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative {what}")))
}

pub(super) fn email_from(s: String) -> Result<Email, StoreError> {
    Email::parse(&s).map_err(|e| corrupt(format!("stored email: {e}")))
}

pub(super) fn visibility_name(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Private => "private",
    }
}

pub(super) fn visibility_from(s: &str) -> Result<Visibility, StoreError> {
    match s {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(corrupt(format!("visibility `{other}`"))),
    }
}

pub(super) const APP_COLUMNS: &str = "id, owner, repo, repo_id, branch, main_file, visibility, deployed_by";

/// Implements [`Store`](super::Store) for `$store`, a struct with a `pool: sqlx::Pool<$db>`.
///
/// - `for_update`: appended to a `SELECT` whose rows must stay locked until the transaction ends
///   (Postgres row locks; empty for SQLite, whose writers are serialized anyway).
/// - `write_lock`: a statement run first in a transaction that reads before it writes, so that
///   what it read cannot go stale before the write (SQLite takes its write lock with it; `None`
///   where row locks do the job).
/// - `$store` has `async fn announce(&self, tx, &Broadcast)`, run inside the transaction that
///   records a new webhook delivery or changes an app or a grant (Postgres: `NOTIFY`; SQLite: a
///   row of the change log), so that the message goes out if, and only if, the change commits.
/// - `extra`: further trait methods (`publish`, `subscribe`).
macro_rules! sql_store {
    (
        store: $store:ty,
        db: $db:ty,
        for_update: $for_update:literal,
        write_lock: $write_lock:expr,
        extra: { $($extra:tt)* }
    ) => {
        const _: () = {
        use sqlx::Row as _;
        use $crate::core::time::Timestamp;
        use $crate::core::email::Email;
        use $crate::core::ids::{AppId, GrantId, RepoId, UserId};
        use $crate::store::sql;
        use $crate::store::{
            Actor, AppRecord, AuditAction, AuditEvent, Broadcast, Change, DELIVERY_RETENTION, DeletedApp, IssueLimit,
            IssueOutcome, LinkRecord, Redemption, Store, StoreError,
        };

        impl $store {
            /// After a commit whose answer was lost: whether `redemption` itself used the link
            /// (`false` if another did), asked again until [`Redemption::answer_by`] while the
            /// store does not answer (a row lock held past the lock wait, no connection).
            async fn used_by(&self, redemption: &Redemption) -> Result<bool, StoreError> {
                loop {
                    // Postgres: the row lock waits for the lost commit's transaction to end, if
                    // its backend still runs it, so that a commit still landing is not read as
                    // unused.
                    let read = sqlx::query_as::<_, (Option<i64>, Option<Vec<u8>>)>(concat!(
                        "SELECT used_at, used_by FROM links WHERE hash = $1",
                        $for_update
                    ))
                    .bind(&redemption.hash()[..])
                    .fetch_optional(&self.pool);
                    match tokio::time::timeout_at(redemption.answer_by(), read).await {
                        Ok(Ok(Some((Some(_), Some(by))))) if by == redemption.attempt() => return Ok(true),
                        // Used by another attempt (or by a version that recorded none).
                        Ok(Ok(Some((Some(_), _)))) => return Ok(false),
                        Ok(Ok(_)) => {
                            return Err(StoreError::Unavailable(
                                "the commit of a link's use failed; the link is unused".into(),
                            ));
                        }
                        Ok(Err(_)) if tokio::time::Instant::now() < redemption.answer_by() => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Ok(Err(_)) | Err(_) => {
                            return Err(StoreError::Unavailable(sql::UNANSWERED_COMMIT.into()));
                        }
                    }
                }
            }

            async fn audit(
                tx: &mut sqlx::Transaction<'_, $db>,
                at: Timestamp,
                actor: &Actor,
                app: &AppId,
                action: AuditAction,
                email: &Email,
            ) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO audit (at, actor, app_id, action, email) VALUES ($1, $2, $3, $4, $5)")
                    .bind(sql::to_i64(at.0, "time")?)
                    .bind(actor.label())
                    .bind(&app.0)
                    .bind(action.as_str())
                    .bind(email.as_str())
                    .execute(&mut **tx)
                    .await
                    .map_err(sql::unavailable)?;
                Ok(())
            }

            async fn insert_app(tx: &mut sqlx::Transaction<'_, $db>, app: &AppRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO apps (id, owner, repo, repo_id, branch, main_file, visibility, deployed_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, repo = excluded.repo,
                       repo_id = excluded.repo_id, branch = excluded.branch, main_file = excluded.main_file,
                       visibility = excluded.visibility, deployed_by = excluded.deployed_by",
                )
                .bind(&app.id.0)
                .bind(&app.owner)
                .bind(&app.repo)
                .bind(sql::to_i64(app.repo_id.0, "repository id")?)
                .bind(&app.branch)
                .bind(&app.main_file)
                .bind(sql::visibility_name(app.visibility))
                .bind(sql::to_i64(app.deployed_by.0, "user id")?)
                .execute(&mut **tx)
                .await
                .map_err(sql::unavailable)?;
                Ok(())
            }

            async fn insert_viewer(
                tx: &mut sqlx::Transaction<'_, $db>,
                app: &AppId,
                email: &Email,
                at: Timestamp,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "INSERT INTO viewers (app_id, email, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&app.0)
                .bind(email.as_str())
                .bind(sql::to_i64(at.0, "time")?)
                .execute(&mut **tx)
                .await
                .map_err(sql::unavailable)?;
                Ok(done.rows_affected() == 1)
            }

            /// Tells the authorizers on this store, inside `tx`, that `app` changed.
            async fn changed(&self, tx: &mut sqlx::Transaction<'_, $db>, app: &AppId) -> Result<(), StoreError> {
                self.announce(tx, &Broadcast::changes(vec![Change::App { app: app.clone() }])).await
            }

            /// Removes everything of `app` inside `tx`, announcing it; returns its record.
            async fn purge(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                app: &AppId,
            ) -> Result<Option<AppRecord>, StoreError> {
                let row = sqlx::query(&format!("SELECT {} FROM apps WHERE id = $1{}", sql::APP_COLUMNS, $for_update))
                    .bind(&app.0)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(sql::unavailable)?;
                let Some(record) = row.as_ref().map(Self::app_from_row).transpose()? else { return Ok(None) };
                for statement in [
                    "DELETE FROM links WHERE app_id = $1",
                    "DELETE FROM viewers WHERE app_id = $1",
                    "DELETE FROM audit WHERE app_id = $1",
                    "DELETE FROM apps WHERE id = $1",
                ] {
                    sqlx::query(statement).bind(&app.0).execute(&mut **tx).await.map_err(sql::unavailable)?;
                }
                self.changed(tx, app).await?;
                Ok(Some(record))
            }

            fn app_from_row(row: &<$db as sqlx::Database>::Row) -> Result<AppRecord, StoreError> {
                let get_s = |c: &str| row.try_get::<String, _>(c).map_err(sql::unavailable);
                let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(sql::unavailable);
                Ok(AppRecord {
                    id: AppId(get_s("id")?),
                    owner: get_s("owner")?,
                    repo: get_s("repo")?,
                    repo_id: RepoId(sql::to_u64(get_i("repo_id")?, "repository id")?),
                    branch: get_s("branch")?,
                    main_file: get_s("main_file")?,
                    visibility: sql::visibility_from(&get_s("visibility")?)?,
                    deployed_by: UserId(sql::to_u64(get_i("deployed_by")?, "user id")?),
                })
            }

            async fn begin_then_lock(&self) -> Result<sqlx::Transaction<'static, $db>, StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                let lock: Option<&str> = $write_lock;
                if let Some(statement) = lock {
                    sqlx::query(statement).execute(&mut *tx).await.map_err(sql::unavailable)?;
                }
                Ok(tx)
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            async fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                Self::insert_app(&mut tx, app).await?;
                self.changed(&mut tx, &app.id).await?;
                tx.commit().await.map_err(sql::unavailable)
            }

            async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
                let row = sqlx::query(&format!("SELECT {} FROM apps WHERE id = $1", sql::APP_COLUMNS))
                    .bind(&id.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                row.as_ref().map(Self::app_from_row).transpose()
            }

            async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
                let rows = sqlx::query(&format!("SELECT {} FROM apps", sql::APP_COLUMNS))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                // Ordered here, by bytes, whatever the database's collation.
                let mut apps = rows.iter().map(Self::app_from_row).collect::<Result<Vec<_>, _>>()?;
                apps.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(apps)
            }

            async fn add_viewer(
                &self,
                app: &AppId,
                email: &Email,
                actor: &Actor,
                at: Timestamp,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                let added = Self::insert_viewer(&mut tx, app, email, at).await?;
                if added {
                    Self::audit(&mut tx, at, actor, app, AuditAction::ViewerAdded, email).await?;
                }
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(added)
            }

            async fn remove_viewer(
                &self,
                app: &AppId,
                email: &Email,
                actor: &Actor,
                at: Timestamp,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                let done = sqlx::query("DELETE FROM viewers WHERE app_id = $1 AND email = $2")
                    .bind(&app.0)
                    .bind(email.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(sql::unavailable)?;
                let removed = done.rows_affected() == 1;
                if removed {
                    Self::audit(&mut tx, at, actor, app, AuditAction::ViewerRemoved, email).await?;
                    self.changed(&mut tx, app).await?;
                }
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(removed)
            }

            async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError> {
                let rows: Vec<String> = sqlx::query_scalar("SELECT email FROM viewers WHERE app_id = $1")
                    .bind(&app.0)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                let mut emails = rows.into_iter().map(sql::email_from).collect::<Result<Vec<_>, _>>()?;
                emails.sort();
                Ok(emails)
            }

            async fn grant(&self, app: &AppId, email: &Email) -> Result<Option<GrantId>, StoreError> {
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM viewers WHERE app_id = $1 AND email = $2")
                    .bind(&app.0)
                    .bind(email.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                id.map(|id| sql::to_u64(id, "grant id").map(GrantId)).transpose()
            }

            async fn audit_log(&self) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query("SELECT at, actor, app_id, action, email FROM audit ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                rows.iter()
                    .map(|row| {
                        let action: String = row.try_get("action").map_err(sql::unavailable)?;
                        let email: Option<String> = row.try_get("email").map_err(sql::unavailable)?;
                        Ok(AuditEvent {
                            at: Timestamp(sql::to_u64(row.try_get("at").map_err(sql::unavailable)?, "time")?),
                            actor: row.try_get("actor").map_err(sql::unavailable)?,
                            app: AppId(row.try_get("app_id").map_err(sql::unavailable)?),
                            action: AuditAction::parse(&action)
                                .ok_or_else(|| sql::corrupt(format!("audit action `{action}`")))?,
                            email: email.map(sql::email_from).transpose()?,
                        })
                    })
                    .collect()
            }

            async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError> {
                let issued_at = sql::to_i64(link.issued_at.0, "time")?;
                // Issues for one (app, address) queue on the lock: the count below cannot go
                // stale before the insert, and a grant removed meanwhile is seen as removed.
                let mut tx = self.begin_then_lock().await?;
                let grant: Option<i64> =
                    sqlx::query_scalar(concat!("SELECT id FROM viewers WHERE app_id = $1 AND email = $2", $for_update))
                        .bind(&link.app.0)
                        .bind(link.email.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(sql::unavailable)?;
                let Some(grant) = grant else {
                    tx.rollback().await.map_err(sql::unavailable)?;
                    return Ok(IssueOutcome::NotInvited);
                };
                let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(*), MIN(issued_at) FROM links WHERE app_id = $1 AND email = $2 AND issued_at > $3",
                )
                .bind(&link.app.0)
                .bind(link.email.as_str())
                .bind(sql::to_i64(link.issued_at.minus(limit.window).0, "time")?)
                .fetch_one(&mut *tx)
                .await
                .map_err(sql::unavailable)?;
                if count >= i64::from(limit.max) {
                    let oldest = Timestamp(sql::to_u64(oldest.unwrap_or(issued_at), "time")?);
                    tx.rollback().await.map_err(sql::unavailable)?;
                    return Ok(IssueOutcome::RateLimited { retry_at: oldest.plus(limit.window) });
                }
                sqlx::query(
                    "INSERT INTO links (hash, app_id, email, issued_at, expires_at, used_at, grant_id)
                     VALUES ($1, $2, $3, $4, $5, NULL, $6)",
                )
                .bind(&link.hash[..])
                .bind(&link.app.0)
                .bind(link.email.as_str())
                .bind(issued_at)
                .bind(sql::to_i64(link.expires_at.0, "time")?)
                .bind(grant)
                .execute(&mut *tx)
                .await
                .map_err(sql::unavailable)?;
                Self::audit(&mut tx, link.issued_at, &Actor::Operator, &link.app, AuditAction::LinkIssued, &link.email)
                    .await?;
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(IssueOutcome::Issued)
            }

            async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError> {
                let row =
                    sqlx::query("SELECT app_id, email, issued_at, expires_at, used_at, grant_id FROM links WHERE hash = $1")
                        .bind(&hash[..])
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(sql::unavailable)?;
                let Some(row) = row else { return Ok(None) };
                let time = |c: &str| -> Result<Timestamp, StoreError> {
                    Ok(Timestamp(sql::to_u64(row.try_get(c).map_err(sql::unavailable)?, "time")?))
                };
                let used_at: Option<i64> = row.try_get("used_at").map_err(sql::unavailable)?;
                let grant: Option<i64> = row.try_get("grant_id").map_err(sql::unavailable)?;
                Ok(Some(LinkRecord {
                    hash: *hash,
                    app: AppId(row.try_get("app_id").map_err(sql::unavailable)?),
                    email: sql::email_from(row.try_get("email").map_err(sql::unavailable)?)?,
                    issued_at: time("issued_at")?,
                    expires_at: time("expires_at")?,
                    used_at: used_at.map(|t| sql::to_u64(t, "time").map(Timestamp)).transpose()?,
                    grant: grant.map(|g| sql::to_u64(g, "grant id").map(GrantId)).transpose()?,
                }))
            }

            async fn use_link(&self, redemption: &Redemption) -> Result<bool, StoreError> {
                let (hash, now) = (redemption.hash(), redemption.at());
                let late = || StoreError::Unavailable("the link's use was not written in time: it stays unused".into());
                // Until the use is written, giving up drops the transaction, which rolls it back:
                // the link stays unused.
                let written = tokio::time::timeout_at(redemption.decide_by(), async {
                    let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                    // One conditional write: of any number of racing redemptions, exactly one
                    // finds `used_at` still empty (SQLite serializes writers; in Postgres the
                    // others wait on the row's lock and re-read it once the first commits).
                    let row: Option<(String, String)> = sqlx::query_as(
                        "UPDATE links SET used_at = $1, used_by = $3
                         WHERE hash = $2 AND used_at IS NULL AND expires_at > $1
                           AND EXISTS (SELECT 1 FROM viewers v WHERE v.id = links.grant_id)
                         RETURNING app_id, email",
                    )
                    .bind(sql::to_i64(now.0, "time")?)
                    .bind(&hash[..])
                    .bind(&redemption.attempt()[..])
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql::unavailable)?;
                    let Some((app, email)) = row else {
                        tx.rollback().await.map_err(sql::unavailable)?;
                        return Ok(None);
                    };
                    let email = sql::email_from(email)?;
                    Self::audit(&mut tx, now, &Actor::Operator, &AppId(app), AuditAction::LinkRedeemed, &email).await?;
                    Ok::<_, StoreError>(Some(tx))
                })
                .await
                .map_err(|_| late())?;
                let Some(tx) = written? else { return Ok(false) };
                // Decided: from here the commit is awaited, never abandoned while it may land.
                match tokio::time::timeout_at(redemption.answer_by(), tx.commit()).await {
                    Ok(Ok(())) => Ok(true),
                    Ok(Err(_)) => self.used_by(redemption).await,
                    Err(_) => Err(StoreError::Unavailable(
                        sql::UNANSWERED_COMMIT.into(),
                    )),
                }
            }

            async fn delete_app(&self, app: &AppId) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                let Some(r) = self.purge(&mut tx, app).await? else {
                    tx.rollback().await.map_err(sql::unavailable)?;
                    return Ok(false);
                };
                sqlx::query(
                    "INSERT INTO deleted_apps (owner, repo, branch, main_file, deployed_by)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&r.owner)
                .bind(&r.repo)
                .bind(&r.branch)
                .bind(&r.main_file)
                .bind(sql::to_i64(r.deployed_by.0, "user id")?)
                .execute(&mut *tx)
                .await
                .map_err(sql::unavailable)?;
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(true)
            }

            async fn delete_account(&self, user: UserId) -> Result<Vec<AppId>, StoreError> {
                let by = sql::to_i64(user.0, "user id")?;
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                let ids: Vec<String> =
                    sqlx::query_scalar(concat!("SELECT id FROM apps WHERE deployed_by = $1", $for_update))
                        .bind(by)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(sql::unavailable)?;
                let mut ids: Vec<AppId> = ids.into_iter().map(AppId).collect();
                ids.sort();
                for id in &ids {
                    self.purge(&mut tx, id).await?;
                }
                sqlx::query("DELETE FROM deleted_apps WHERE deployed_by = $1")
                    .bind(by)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql::unavailable)?;
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(ids)
            }

            async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
                let rows = sqlx::query("SELECT owner, repo, branch, main_file, deployed_by FROM deleted_apps")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sql::unavailable)?;
                let mut kept = rows
                    .iter()
                    .map(|row| {
                        Ok(DeletedApp {
                            owner: row.try_get("owner").map_err(sql::unavailable)?,
                            repo: row.try_get("repo").map_err(sql::unavailable)?,
                            branch: row.try_get("branch").map_err(sql::unavailable)?,
                            main_file: row.try_get("main_file").map_err(sql::unavailable)?,
                            deployed_by: UserId(sql::to_u64(
                                row.try_get("deployed_by").map_err(sql::unavailable)?,
                                "user id",
                            )?),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                kept.sort();
                Ok(kept)
            }

            async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                // Of processes seeding at once, one inserts the marker; the others wait on it (its
                // key, or SQLite's write lock) until that transaction ends, then find it there.
                let claimed =
                    sqlx::query("INSERT INTO meta (key, value) VALUES ('seeded', $1) ON CONFLICT DO NOTHING")
                        .bind(at.0.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(sql::unavailable)?
                        .rows_affected()
                        == 1;
                if claimed {
                    for (app, viewers) in apps {
                        Self::insert_app(&mut tx, app).await?;
                        self.changed(&mut tx, &app.id).await?;
                        for email in viewers {
                            if Self::insert_viewer(&mut tx, &app.id, email, at).await? {
                                Self::audit(&mut tx, at, &Actor::Operator, &app.id, AuditAction::ViewerAdded, email)
                                    .await?;
                            }
                        }
                    }
                }
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(claimed)
            }

            async fn record_delivery(
                &self,
                id: &str,
                at: Timestamp,
                broadcast: &Broadcast,
            ) -> Result<bool, StoreError> {
                let at_ms = sql::to_i64(at.0, "time")?;
                let mut tx = self.pool.begin().await.map_err(sql::unavailable)?;
                sqlx::query("DELETE FROM deliveries WHERE seen_at < $1")
                    .bind(sql::to_i64(at.minus(DELIVERY_RETENTION).0, "time")?)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql::unavailable)?;
                let new = sqlx::query("INSERT INTO deliveries (id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(sql::unavailable)?
                    .rows_affected()
                    == 1;
                if new {
                    self.announce(&mut tx, broadcast).await?;
                }
                tx.commit().await.map_err(sql::unavailable)?;
                Ok(new)
            }

            $($extra)*
        }
        };
    };
}

pub(super) use sql_store;
