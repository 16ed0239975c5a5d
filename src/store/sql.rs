//! What the SQLite and Postgres stores share: every operation, written once in SQL both dialects
//! accept (`$N` parameters, `ON CONFLICT`, `RETURNING`), generic over the sqlx database, and the
//! conversions between rows and records. Each backend implements [`Backend`], and is a
//! [`Store`] through it; a backend keeps only what differs: connecting, the schema, locking, and
//! how it tells other authorizers.

use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Transaction, Type};
use tokio::sync::mpsc;

use super::{
    Actor, AppRecord, AppStore, AuditAction, AuditEvent, AuditFilter, AuditOutcome, AuditStore, Broadcast, Change,
    ChangeFeed, DELETED_ACCOUNT, DELIVERY_RETENTION, DeletedApp, DeployOutcome, FeedEvent, IssueLimit, IssueOutcome,
    LinkRecord, LinkStore, Redemption, StoreError, StoreFailure, SupportId, SupportStore, SupportWindow, ViewerStore,
};
use crate::core::email::Email;
use crate::core::ids::{AppId, GrantId, RepoId, UserId};
use crate::core::policy::{Capability, Visibility};
use crate::core::time::Timestamp;

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
const UNANSWERED_COMMIT: &str = "the commit of a link's use went unanswered: whether the link was used is unknown";

pub(super) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(StoreFailure::new(what))
}

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{what} {v} does not fit the store")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative {what}")))
}

fn email_from(s: String) -> Result<Email, StoreError> {
    Email::parse(&s).map_err(|e| corrupt(format!("stored email: {e}")))
}

fn visibility_from(s: &str) -> Result<Visibility, StoreError> {
    match s {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(corrupt(format!("visibility `{other}`"))),
    }
}

/// A support window's capabilities as stored: `view`, `edit` or `view,edit`.
fn capabilities_text(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
}

fn capabilities_from(text: &str) -> Result<Vec<Capability>, StoreError> {
    text.split(',').map(|c| c.parse::<Capability>().map_err(|e| corrupt(format!("support window: {e}")))).collect()
}

const APP_COLUMNS: &str = "id, owner, repo, repo_id, branch, main_file, visibility, deployed_by";

/// What one SQL backend adds to the implementation of [`Store`] the backends share: its pool,
/// its locking, and how it tells other authorizers (Postgres: `NOTIFY`; SQLite: a row of the
/// change log). Every type that implements it is a [`Store`].
#[async_trait]
pub(super) trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// The sqlx database.
    type Db: sqlx::Database;

    /// Appended to a `SELECT` whose rows must stay locked until the transaction ends (Postgres
    /// row locks; empty for SQLite, whose writers are serialized anyway).
    const FOR_UPDATE: &'static str;

    /// Appended to a `SELECT` whose rows must not be deleted (nor their key changed) until the
    /// transaction ends, without holding other readers back (Postgres `FOR KEY SHARE`; empty for
    /// SQLite).
    const FOR_KEY_SHARE: &'static str;

    /// A statement run first in a transaction that reads before it writes, so that what it read
    /// cannot go stale before the write (SQLite takes its write lock with it; `None` where row
    /// locks do the job).
    const WRITE_LOCK: Option<&'static str>;

    /// A statement, taking one GitHub identity's id as `$1`, that holds that identity's lock until
    /// the transaction ends: an account's deletion and a deploy by that identity take it, so
    /// that a deploy is never half seen by the deletion (`None` where `WRITE_LOCK` already
    /// serializes every writer).
    const ACCOUNT_LOCK: Option<&'static str>;

    /// The pool every operation runs on.
    fn pool(&self) -> &Pool<Self::Db>;

    /// How many rows a statement changed.
    fn rows_affected(done: &<Self::Db as Database>::QueryResult) -> u64;

    /// Tells the authorizers on this store, inside `tx`, what `broadcast` says, so that the
    /// message goes out if, and only if, the transaction commits.
    async fn announce(&self, tx: &mut Transaction<'_, Self::Db>, broadcast: &Broadcast) -> Result<(), StoreError>;

    /// [`ChangeFeed::subscribe`] for this backend.
    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>>;

    /// Inside the deletion of `user`'s account, which deletes `apps`, before the audit entries
    /// that belong to it go: removes every trace of the account, of `apps` and of the apps those
    /// entries name, from what the backend keeps beside the tables (SQLite: the change log's
    /// bodies name apps and users).
    async fn forget_history(
        &self,
        tx: &mut Transaction<'_, Self::Db>,
        user: UserId,
        apps: &[AppId],
    ) -> Result<(), StoreError> {
        let _ = (tx, user, apps);
        Ok(())
    }

    /// [`ChangeFeed::close`] for this backend.
    async fn close(&self);

    /// After a deletion has committed: makes sure nothing it deleted is left in the backend's
    /// files (SQLite: its write-ahead log folded into the database file, then emptied).
    async fn erase(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An `impl` for every SQL backend `B`, under the bounds the shared SQL needs of its database:
/// the helpers ([`Sql`]) and each store trait. `impl [Target] { .. }`, attributes first.
macro_rules! sql_bounds {
    ($(#[$attr:meta])* impl [$($target:tt)+] { $($body:tt)* }) => {
        $(#[$attr])*
        impl<B: Backend> $($target)+
        where
            for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
            for<'q> <B::Db as Database>::Arguments<'q>: IntoArguments<'q, B::Db>,
            for<'q> String: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
            for<'q> &'q str: Encode<'q, B::Db> + Type<B::Db>,
            for<'q> i64: Encode<'q, B::Db> + Decode<'q, B::Db> + Type<B::Db>,
            for<'q> &'q [u8]: Encode<'q, B::Db> + Type<B::Db>,
            for<'q> Vec<u8>: Decode<'q, B::Db> + Type<B::Db>,
            for<'q> Option<&'q str>: Encode<'q, B::Db> + Type<B::Db>,
            for<'q> Option<i64>: Encode<'q, B::Db> + Type<B::Db>,
            for<'q> &'q str: ColumnIndex<<B::Db as Database>::Row>,
            usize: ColumnIndex<<B::Db as Database>::Row>,
        {
            $($body)*
        }
    };
}

/// The shared operations' helpers, for backend `B` (see [`Backend`]).
struct Sql<B>(PhantomData<B>);

sql_bounds! {
    impl [Sql<B>] {
    /// After a commit whose answer was lost: whether `redemption` itself used the link (`false`
    /// if another did), asked again until [`Redemption::answer_by`] while the store does not
    /// answer (a row lock held past the lock wait, no connection).
    async fn used_by(store: &B, redemption: &Redemption) -> Result<bool, StoreError> {
        // Postgres: the row lock waits for the lost commit's transaction to end, if its backend
        // still runs it, so that a commit still landing is not read as unused.
        let statement = format!("SELECT used_at, used_by FROM links WHERE hash = $1{}", B::FOR_UPDATE);
        loop {
            let read = sqlx::query_as::<_, (Option<i64>, Option<Vec<u8>>)>(&statement)
                .bind(&redemption.hash()[..])
                .fetch_optional(store.pool());
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
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(_)) | Err(_) => return Err(StoreError::Unavailable(UNANSWERED_COMMIT.into())),
            }
        }
    }

    /// Appends `event` inside `tx`. The entry belongs to its app's deployer or, if there is no
    /// such app, to `owner`. An entry with an address is written only while its app exists, so
    /// that no address outlives the app's deletion.
    async fn audit(
        tx: &mut Transaction<'_, B::Db>,
        event: &AuditEvent,
        owner: Option<UserId>,
    ) -> Result<(), StoreError> {
        let owner = owner.map(|u| to_i64(u.0, "user id")).transpose()?;
        // An entry with an address is written only while its app exists, and holds the app's row
        // (key share) meanwhile: a deletion either finds the entry written and clears its address,
        // or waits, and the entry then finds no app and is dropped. A transaction that writes such
        // an entry after other rows of the app takes the app's row first (as a deletion does), so
        // that the two cannot wait on each other.
        let only_while_the_app_exists = match event.email {
            Some(_) => format!("WHERE EXISTS (SELECT 1 FROM apps WHERE id = $3{})", B::FOR_KEY_SHARE),
            None => String::new(),
        };
        sqlx::query(&format!(
            "INSERT INTO audit (at, actor, app_id, action, email, outcome, detail, owner_id)
             SELECT $1, $2, $3, $4, $5, $6, $7, COALESCE((SELECT deployed_by FROM apps WHERE id = $3), $8)
             {only_while_the_app_exists}"
        ))
        .bind(to_i64(event.at.0, "time")?)
        .bind(&event.actor)
        .bind(&event.app.0)
        .bind(event.action.as_str())
        .bind(event.email.as_ref().map(Email::as_str))
        .bind(event.outcome.as_str())
        .bind(event.detail.as_deref())
        .bind(owner)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_app(tx: &mut Transaction<'_, B::Db>, app: &AppRecord) -> Result<(), StoreError> {
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
        .bind(to_i64(app.repo_id.0, "repository id")?)
        .bind(&app.branch)
        .bind(&app.main_file)
        .bind(app.visibility.as_str())
        .bind(to_i64(app.deployed_by.0, "user id")?)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn insert_viewer(
        tx: &mut Transaction<'_, B::Db>,
        app: &AppId,
        email: &Email,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("INSERT INTO viewers (app_id, email, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&app.0)
                .bind(email.as_str())
                .bind(to_i64(at.0, "time")?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        Ok(B::rows_affected(&done) == 1)
    }

    /// Tells the authorizers on this store, inside `tx`, that `app` changed.
    async fn changed(store: &B, tx: &mut Transaction<'_, B::Db>, app: &AppId) -> Result<(), StoreError> {
        store.announce(tx, &Broadcast::changes(vec![Change::App { app: app.clone() }])).await
    }

    /// Removes everything of `app` inside `tx`, announcing it; returns its record.
    async fn purge(store: &B, tx: &mut Transaction<'_, B::Db>, app: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1{}", B::FOR_UPDATE))
            .bind(&app.0)
            .fetch_optional(&mut **tx)
            .await
            .map_err(unavailable)?;
        let Some(record) = row.as_ref().map(Self::app_from_row).transpose()? else { return Ok(None) };
        for statement in [
            "DELETE FROM links WHERE app_id = $1",
            "DELETE FROM viewers WHERE app_id = $1",
            "DELETE FROM support_windows WHERE app_id = $1",
            "UPDATE audit SET email = NULL WHERE app_id = $1",
            "DELETE FROM apps WHERE id = $1",
        ] {
            sqlx::query(statement).bind(&app.0).execute(&mut **tx).await.map_err(unavailable)?;
        }
        Self::changed(store, tx, app).await?;
        Ok(Some(record))
    }

    fn app_from_row(row: &<B::Db as Database>::Row) -> Result<AppRecord, StoreError> {
        let get_s = |c: &str| row.try_get::<String, _>(c).map_err(unavailable);
        let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(unavailable);
        Ok(AppRecord {
            id: AppId(get_s("id")?),
            owner: get_s("owner")?,
            repo: get_s("repo")?,
            repo_id: RepoId(to_u64(get_i("repo_id")?, "repository id")?),
            branch: get_s("branch")?,
            main_file: get_s("main_file")?,
            visibility: visibility_from(&get_s("visibility")?)?,
            deployed_by: UserId(to_u64(get_i("deployed_by")?, "user id")?),
        })
    }

    /// Records, inside `tx`, each invalidation `broadcast` carries against the shared facts
    /// ([`FactStore`](super::FactStore)).
    async fn record_invalidations(tx: &mut Transaction<'_, B::Db>, broadcast: &Broadcast) -> Result<(), StoreError> {
        for inv in &broadcast.invalidations {
            let (scope, id) = super::fact_scope(inv);
            sqlx::query("INSERT INTO fact_invalidations (scope, id) VALUES ($1, $2)")
                .bind(scope)
                .bind(to_i64(id, "invalidated id")?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        if !broadcast.invalidations.is_empty() {
            // The newest are kept; a roster fetched before the oldest kept is never served.
            sqlx::query("DELETE FROM fact_invalidations WHERE seq <= (SELECT MAX(seq) FROM fact_invalidations) - $1")
                .bind(to_i64(super::KEPT_FACT_INVALIDATIONS, "count")?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Deletes from shared-fact `table` (`github_rosters`, `github_repos`), inside `tx`, what
    /// GitHub confirmed longer than the retention before `at`.
    async fn forget_shared_before(
        tx: &mut Transaction<'_, B::Db>,
        table: &'static str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let horizon = at.minus(super::SHARED_ROSTER_RETENTION);
        sqlx::query(&format!("DELETE FROM {table} WHERE confirmed_at < $1"))
            .bind(to_i64(horizon.0, "time")?)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Takes `user`'s account lock in `tx` ([`Backend::ACCOUNT_LOCK`]).
    async fn lock_account(tx: &mut Transaction<'_, B::Db>, user: UserId) -> Result<(), StoreError> {
        if let Some(statement) = B::ACCOUNT_LOCK {
            sqlx::query(statement).bind(to_i64(user.0, "user id")?).execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn begin_then_lock(store: &B) -> Result<Transaction<'static, B::Db>, StoreError> {
        let mut tx = store.pool().begin().await.map_err(unavailable)?;
        if let Some(statement) = B::WRITE_LOCK {
            sqlx::query(statement).execute(&mut *tx).await.map_err(unavailable)?;
        }
        Ok(tx)
    }
}}

sql_bounds! {
    #[async_trait]
    impl [AppStore for B] {
    async fn seed_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        Sql::<B>::insert_app(&mut tx, app).await?;
        Sql::changed(self, &mut tx, &app.id).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn app(&self, id: &AppId) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1"))
            .bind(&id.0)
            .fetch_optional(self.pool())
            .await
            .map_err(unavailable)?;
        row.as_ref().map(Sql::<B>::app_from_row).transpose()
    }

    async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps"))
            .fetch_all(self.pool())
            .await
            .map_err(unavailable)?;
        // Ordered here, by bytes, whatever the database's collation.
        let mut apps = rows.iter().map(Sql::<B>::app_from_row).collect::<Result<Vec<_>, _>>()?;
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(apps)
    }

    async fn deploy_app(&self, app: &AppRecord, event: &AuditEvent) -> Result<DeployOutcome, StoreError> {
        // SQLite: one writer at a time. Postgres: a racing insert of the same id waits for the
        // first to commit, then does nothing, and the row lock below orders the rest.
        let mut tx = Sql::begin_then_lock(self).await?;
        Sql::<B>::lock_account(&mut tx, app.deployed_by).await?;
        let done = sqlx::query(
            "INSERT INTO apps (id, owner, repo, repo_id, branch, main_file, visibility, deployed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&app.id.0)
        .bind(&app.owner)
        .bind(&app.repo)
        .bind(to_i64(app.repo_id.0, "repository id")?)
        .bind(&app.branch)
        .bind(&app.main_file)
        .bind(app.visibility.as_str())
        .bind(to_i64(app.deployed_by.0, "user id")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let outcome = if B::rows_affected(&done) == 1 {
            DeployOutcome::Deployed
        } else {
            let row = sqlx::query(&format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1{}", B::FOR_UPDATE))
                .bind(&app.id.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            let existing = Sql::<B>::app_from_row(&row)?;
            if !existing.same_coordinates(app) || existing.repo_id != app.repo_id {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(DeployOutcome::Exists(existing));
            }
            DeployOutcome::Redeployed(existing)
        };
        Sql::<B>::audit(&mut tx, event, Some(app.deployed_by)).await?;
        Sql::changed(self, &mut tx, &app.id).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn set_visibility(
        &self,
        app: &AppId,
        visibility: Visibility,
        event: &AuditEvent,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = Sql::begin_then_lock(self).await?;
        let current: Option<String> =
            sqlx::query_scalar(&format!("SELECT visibility FROM apps WHERE id = $1{}", B::FOR_UPDATE))
                .bind(&app.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let Some(current) = current else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        };
        if visibility_from(&current)? == visibility {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Some(false));
        }
        sqlx::query("UPDATE apps SET visibility = $2 WHERE id = $1")
            .bind(&app.0)
            .bind(visibility.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        Sql::<B>::audit(&mut tx, event, None).await?;
        Sql::changed(self, &mut tx, app).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(true))
    }

    async fn delete_app(&self, app: &AppId, event: &AuditEvent) -> Result<bool, StoreError> {
        let mut tx = Sql::begin_then_lock(self).await?;
        let Some(r) = Sql::purge(self, &mut tx, app).await? else {
            tx.rollback().await.map_err(unavailable)?;
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
        .bind(to_i64(r.deployed_by.0, "user id")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        Sql::<B>::audit(&mut tx, event, Some(r.deployed_by)).await?;
        tx.commit().await.map_err(unavailable)?;
        self.erase().await?;
        Ok(true)
    }

    async fn delete_account(&self, user: UserId, at: Timestamp) -> Result<Vec<AppId>, StoreError> {
        let by = to_i64(user.0, "user id")?;
        let mut tx = Sql::begin_then_lock(self).await?;
        // A deploy by this identity waits until the deletion ends (or the deletion for the
        // deploy): otherwise an app committed after the deletion's first read would outlive it,
        // without its deploy entry.
        Sql::<B>::lock_account(&mut tx, user).await?;
        let ids: Vec<String> =
            sqlx::query_scalar(&format!("SELECT id FROM apps WHERE deployed_by = $1{}", B::FOR_UPDATE))
                .bind(by)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        let mut ids: Vec<AppId> = ids.into_iter().map(AppId).collect();
        ids.sort();
        for id in &ids {
            Sql::purge(self, &mut tx, id).await?;
        }
        // Before its entries go: they name its apps deleted earlier, which the history forgets too.
        self.forget_history(&mut tx, user, &ids).await?;
        for statement in ["DELETE FROM deleted_apps WHERE deployed_by = $1", "DELETE FROM audit WHERE owner_id = $1"] {
            sqlx::query(statement).bind(by).execute(&mut *tx).await.map_err(unavailable)?;
        }
        // Shared rosters may list the account: they are GitHub's facts kept a while, fetched
        // again when needed.
        sqlx::query("DELETE FROM github_rosters").execute(&mut *tx).await.map_err(unavailable)?;
        sqlx::query("DELETE FROM github_repos").execute(&mut *tx).await.map_err(unavailable)?;
        // The windows it opened on other people's apps go too, and every replica hears it.
        let opened_on: Vec<(String, i64)> = sqlx::query_as(
            "DELETE FROM support_windows WHERE granted_by = $1
             RETURNING app_id,
               CAST(CASE WHEN revoked_at IS NULL AND opened_at <= $2 AND ends_at > $2 THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(Actor::Github(user).label())
        .bind(to_i64(at.0, "time")?)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut still_open: Vec<AppId> =
            opened_on.iter().filter(|(_, open)| *open == 1).map(|(app, _)| AppId(app.clone())).collect();
        still_open.sort();
        still_open.dedup();
        let mut opened_on: Vec<AppId> = opened_on.into_iter().map(|(app, _)| AppId(app)).collect();
        opened_on.sort();
        opened_on.dedup();
        for app in &still_open {
            Sql::<B>::audit(&mut tx, &super::window_gone(app, user, at), None).await?;
        }
        for app in &opened_on {
            Sql::changed(self, &mut tx, app).await?;
        }
        sqlx::query("UPDATE audit SET actor = $2 WHERE actor = $1")
            .bind(Actor::Github(user).label())
            .bind(DELETED_ACCOUNT)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        self.erase().await?;
        Ok(ids)
    }

    async fn deleted_apps(&self) -> Result<Vec<DeletedApp>, StoreError> {
        let rows = sqlx::query("SELECT owner, repo, branch, main_file, deployed_by FROM deleted_apps")
            .fetch_all(self.pool())
            .await
            .map_err(unavailable)?;
        let mut kept = rows
            .iter()
            .map(|row| {
                Ok(DeletedApp {
                    owner: row.try_get("owner").map_err(unavailable)?,
                    repo: row.try_get("repo").map_err(unavailable)?,
                    branch: row.try_get("branch").map_err(unavailable)?,
                    main_file: row.try_get("main_file").map_err(unavailable)?,
                    deployed_by: UserId(to_u64(row.try_get("deployed_by").map_err(unavailable)?, "user id")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        kept.sort();
        Ok(kept)
    }

    async fn seed_once(&self, apps: &[(AppRecord, Vec<Email>)], at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        // Of processes seeding at once, one inserts the marker; the others wait on it (its key,
        // or SQLite's write lock) until that transaction ends, then find it there.
        let done = sqlx::query("INSERT INTO meta (key, value) VALUES ('seeded', $1) ON CONFLICT DO NOTHING")
            .bind(at.0.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let claimed = B::rows_affected(&done) == 1;
        if claimed {
            for (app, viewers) in apps {
                Sql::<B>::insert_app(&mut tx, app).await?;
                Sql::changed(self, &mut tx, &app.id).await?;
                for email in viewers {
                    if Sql::<B>::insert_viewer(&mut tx, &app.id, email, at).await? {
                        let event =
                            AuditEvent::new(at, &Actor::Operator, &app.id, AuditAction::ViewerAdded).with_email(email);
                        Sql::<B>::audit(&mut tx, &event, None).await?;
                    }
                }
            }
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(claimed)
    }
}}

sql_bounds! {
    #[async_trait]
    impl [ViewerStore for B] {
    async fn add_viewer(&self, app: &AppId, email: &Email, actor: &Actor, at: Timestamp) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        let added = Sql::<B>::insert_viewer(&mut tx, app, email, at).await?;
        if added {
            let event = AuditEvent::new(at, actor, app, AuditAction::ViewerAdded).with_email(email);
            Sql::<B>::audit(&mut tx, &event, None).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(added)
    }

    async fn remove_viewer(
        &self,
        app: &AppId,
        email: &Email,
        actor: &Actor,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        // The app's row first, as a deletion takes it, then the viewer's (see `audit`).
        let statement = format!(
            "DELETE FROM viewers WHERE app_id = $1 AND email = $2
               AND EXISTS (SELECT 1 FROM apps WHERE id = $1{})",
            B::FOR_KEY_SHARE
        );
        let done =
            sqlx::query(&statement).bind(&app.0).bind(email.as_str()).execute(&mut *tx).await.map_err(unavailable)?;
        let removed = B::rows_affected(&done) == 1;
        if removed {
            let event = AuditEvent::new(at, actor, app, AuditAction::ViewerRemoved).with_email(email);
            Sql::<B>::audit(&mut tx, &event, None).await?;
            Sql::changed(self, &mut tx, app).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(removed)
    }

    async fn viewers(&self, app: &AppId) -> Result<Vec<Email>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT email FROM viewers WHERE app_id = $1")
            .bind(&app.0)
            .fetch_all(self.pool())
            .await
            .map_err(unavailable)?;
        let mut emails = rows.into_iter().map(email_from).collect::<Result<Vec<_>, _>>()?;
        emails.sort();
        Ok(emails)
    }

    async fn grant(&self, app: &AppId, email: &Email) -> Result<Option<GrantId>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM viewers WHERE app_id = $1 AND email = $2")
            .bind(&app.0)
            .bind(email.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(unavailable)?;
        id.map(|id| to_u64(id, "grant id").map(GrantId)).transpose()
    }
}}

sql_bounds! {
    #[async_trait]
    impl [LinkStore for B] {
    async fn issue_link(&self, link: &LinkRecord, limit: IssueLimit) -> Result<IssueOutcome, StoreError> {
        let issued_at = to_i64(link.issued_at.0, "time")?;
        // Issues for one (app, address) queue on the lock: the count below cannot go stale
        // before the insert, and a grant removed meanwhile is seen as removed.
        let mut tx = Sql::begin_then_lock(self).await?;
        // The app's row first, as a deletion takes it, then the grant's (see `audit`).
        sqlx::query(&format!("SELECT id FROM apps WHERE id = $1{}", B::FOR_KEY_SHARE))
            .bind(&link.app.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let grant: Option<i64> =
            sqlx::query_scalar(&format!("SELECT id FROM viewers WHERE app_id = $1 AND email = $2{}", B::FOR_UPDATE))
                .bind(&link.app.0)
                .bind(link.email.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let Some(grant) = grant else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(IssueOutcome::NotInvited);
        };
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(issued_at) FROM links WHERE app_id = $1 AND email = $2 AND issued_at > $3",
        )
        .bind(&link.app.0)
        .bind(link.email.as_str())
        .bind(to_i64(link.issued_at.minus(limit.window).0, "time")?)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        if count >= i64::from(limit.max) {
            let oldest = Timestamp(to_u64(oldest.unwrap_or(issued_at), "time")?);
            tx.rollback().await.map_err(unavailable)?;
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
        .bind(to_i64(link.expires_at.0, "time")?)
        .bind(grant)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let event = AuditEvent::new(link.issued_at, &Actor::Operator, &link.app, AuditAction::LinkIssued)
            .with_email(&link.email);
        Sql::<B>::audit(&mut tx, &event, None).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(IssueOutcome::Issued)
    }

    async fn link(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, StoreError> {
        let row =
            sqlx::query("SELECT app_id, email, issued_at, expires_at, used_at, grant_id FROM links WHERE hash = $1")
                .bind(&hash[..])
                .fetch_optional(self.pool())
                .await
                .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let time = |c: &str| -> Result<Timestamp, StoreError> {
            Ok(Timestamp(to_u64(row.try_get(c).map_err(unavailable)?, "time")?))
        };
        let used_at: Option<i64> = row.try_get("used_at").map_err(unavailable)?;
        let grant: Option<i64> = row.try_get("grant_id").map_err(unavailable)?;
        Ok(Some(LinkRecord {
            hash: *hash,
            app: AppId(row.try_get("app_id").map_err(unavailable)?),
            email: email_from(row.try_get("email").map_err(unavailable)?)?,
            issued_at: time("issued_at")?,
            expires_at: time("expires_at")?,
            used_at: used_at.map(|t| to_u64(t, "time").map(Timestamp)).transpose()?,
            grant: grant.map(|g| to_u64(g, "grant id").map(GrantId)).transpose()?,
        }))
    }

    async fn use_link(&self, redemption: &Redemption) -> Result<bool, StoreError> {
        let (hash, now) = (redemption.hash(), redemption.at());
        let late = || StoreError::Unavailable("the link's use was not written in time: it stays unused".into());
        // Until the use is written, giving up drops the transaction, which rolls it back: the
        // link stays unused.
        let written = tokio::time::timeout_at(redemption.decide_by(), async {
            let mut tx = self.pool().begin().await.map_err(unavailable)?;
            // One conditional write: of any number of racing redemptions, exactly one finds
            // `used_at` still empty (SQLite serializes writers; in Postgres the others wait on
            // the row's lock and re-read it once the first commits).
            // The app's row is taken before the link's, as a deletion takes them (see `audit`).
            let statement = format!(
                "UPDATE links SET used_at = $1, used_by = $3
                 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1
                   AND EXISTS (SELECT 1 FROM apps a WHERE a.id = links.app_id{})
                   AND EXISTS (SELECT 1 FROM viewers v WHERE v.id = links.grant_id)
                 RETURNING app_id, email",
                B::FOR_KEY_SHARE
            );
            let row: Option<(String, String)> = sqlx::query_as(&statement)
                .bind(to_i64(now.0, "time")?)
                .bind(&hash[..])
                .bind(&redemption.attempt()[..])
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            let Some((app, email)) = row else {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(None);
            };
            let email = email_from(email)?;
            let event =
                AuditEvent::new(now, &Actor::Operator, &AppId(app), AuditAction::LinkRedeemed).with_email(&email);
            Sql::<B>::audit(&mut tx, &event, None).await?;
            Ok::<_, StoreError>(Some(tx))
        })
        .await
        .map_err(|_| late())?;
        let Some(tx) = written? else { return Ok(false) };
        // Decided: from here the commit is awaited, never abandoned while it may land.
        match tokio::time::timeout_at(redemption.answer_by(), tx.commit()).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(_)) => Sql::used_by(self, redemption).await,
            Err(_) => Err(StoreError::Unavailable(UNANSWERED_COMMIT.into())),
        }
    }
}}

sql_bounds! {
    #[async_trait]
    impl [SupportStore for B] {
    async fn open_support(&self, window: &SupportWindow, event: &AuditEvent) -> Result<Option<SupportId>, StoreError> {
        let mut tx = Sql::begin_then_lock(self).await?;
        if let Some(granter) = Actor::github_of(&window.granted_by) {
            // A window opened by an identity waits for that account's deletion to end.
            Sql::<B>::lock_account(&mut tx, granter).await?;
        }
        let exists: Option<String> = sqlx::query_scalar(&format!("SELECT id FROM apps WHERE id = $1{}", B::FOR_UPDATE))
            .bind(&window.app.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if exists.is_none() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO support_windows (app_id, agent, capabilities, opened_at, ends_at, reason, granted_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&window.app.0)
        .bind(window.agent.as_deref())
        .bind(capabilities_text(&window.capabilities))
        .bind(to_i64(window.opened_at.0, "time")?)
        .bind(to_i64(window.ends_at.0, "time")?)
        .bind(&window.reason)
        .bind(&window.granted_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        Sql::<B>::audit(&mut tx, event, None).await?;
        Sql::changed(self, &mut tx, &window.app).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(SupportId(to_u64(id, "support window id")?)))
    }

    async fn revoke_support(
        &self,
        app: &AppId,
        agent: Option<&str>,
        at: Timestamp,
        event: &AuditEvent,
    ) -> Result<u32, StoreError> {
        let at = to_i64(at.0, "time")?;
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        let done = sqlx::query(
            "UPDATE support_windows SET revoked_at = $2
             WHERE app_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR agent = $3 OR agent IS NULL)",
        )
        .bind(&app.0)
        .bind(at)
        .bind(agent)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let revoked = u32::try_from(B::rows_affected(&done)).unwrap_or(u32::MAX);
        if revoked > 0 {
            Sql::<B>::audit(&mut tx, event, None).await?;
            Sql::changed(self, &mut tx, app).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(revoked)
    }

    async fn support_windows(&self, app: &AppId) -> Result<Vec<SupportWindow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, agent, capabilities, opened_at, ends_at, reason, granted_by, revoked_at
             FROM support_windows WHERE app_id = $1 ORDER BY id",
        )
        .bind(&app.0)
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let time = |c: &str| -> Result<Timestamp, StoreError> {
                    Ok(Timestamp(to_u64(row.try_get(c).map_err(unavailable)?, "time")?))
                };
                let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(unavailable)?;
                Ok(SupportWindow {
                    id: SupportId(to_u64(row.try_get("id").map_err(unavailable)?, "support window id")?),
                    app: app.clone(),
                    agent: row.try_get("agent").map_err(unavailable)?,
                    capabilities: capabilities_from(&row.try_get::<String, _>("capabilities").map_err(unavailable)?)?,
                    opened_at: time("opened_at")?,
                    ends_at: time("ends_at")?,
                    reason: row.try_get("reason").map_err(unavailable)?,
                    granted_by: row.try_get("granted_by").map_err(unavailable)?,
                    revoked_at: revoked_at.map(|t| to_u64(t, "time").map(Timestamp)).transpose()?,
                })
            })
            .collect()
    }
}}

sql_bounds! {
    #[async_trait]
    impl [AuditStore for B] {
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let since = filter.from().map(|t| to_i64(t.0, "time")).transpose()?.unwrap_or(i64::MIN);
        let rows = sqlx::query(
            "SELECT at, actor, app_id, action, email, outcome, detail FROM audit
             WHERE ($1 IS NULL OR app_id = $1) AND at >= $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(filter.app().map(|a| a.0.as_str()))
        .bind(since)
        .bind(filter.max().map_or(i64::MAX, i64::from))
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                let get_s = |c: &str| row.try_get::<String, _>(c).map_err(unavailable);
                let get_o = |c: &str| row.try_get::<Option<String>, _>(c).map_err(unavailable);
                let action = get_s("action")?;
                let outcome = get_s("outcome")?;
                Ok(AuditEvent {
                    at: Timestamp(to_u64(row.try_get("at").map_err(unavailable)?, "time")?),
                    actor: get_s("actor")?,
                    app: AppId(get_s("app_id")?),
                    action: AuditAction::parse(&action).ok_or_else(|| corrupt(format!("audit action `{action}`")))?,
                    outcome: AuditOutcome::parse(&outcome)
                        .ok_or_else(|| corrupt(format!("audit outcome `{outcome}`")))?,
                    email: get_o("email")?.map(email_from).transpose()?,
                    detail: get_o("detail")?,
                })
            })
            .collect()
    }

    async fn record(&self, event: &AuditEvent, owner: Option<UserId>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        if let Some(owner) = owner {
            // An entry that belongs to an identity waits for that account's deletion to end.
            Sql::<B>::lock_account(&mut tx, owner).await?;
        }
        Sql::<B>::audit(&mut tx, event, owner).await?;
        tx.commit().await.map_err(unavailable)
    }
}}

sql_bounds! {
    #[async_trait]
    impl [ChangeFeed for B] {
    async fn record_delivery(&self, id: &str, at: Timestamp, broadcast: &Broadcast) -> Result<bool, StoreError> {
        let at_ms = to_i64(at.0, "time")?;
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        sqlx::query("DELETE FROM deliveries WHERE seen_at < $1")
            .bind(to_i64(at.minus(DELIVERY_RETENTION).0, "time")?)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query("INSERT INTO deliveries (id, seen_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(at_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let new = B::rows_affected(&done) == 1;
        if new {
            Sql::<B>::record_invalidations(&mut tx, broadcast).await?;
            self.announce(&mut tx, broadcast).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(new)
    }

    async fn publish(&self, broadcast: &Broadcast) -> Result<(), StoreError> {
        // SQLite reads the log before it writes it: take the write lock first.
        let mut tx = Sql::begin_then_lock(self).await?;
        Sql::<B>::record_invalidations(&mut tx, broadcast).await?;
        self.announce(&mut tx, broadcast).await?;
        tx.commit().await.map_err(unavailable)
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        Backend::subscribe(self)
    }

    async fn close(&self) {
        Backend::close(self).await;
    }
}}

sql_bounds! {
    #[async_trait]
    impl [super::FactStore for B] {
    async fn fact_epoch(&self) -> Result<u64, StoreError> {
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM fact_invalidations")
            .fetch_one(self.pool())
            .await
            .map_err(unavailable)?;
        to_u64(seq, "invalidation")
    }

    async fn put_roster(&self, roster: &super::SharedRoster) -> Result<(), StoreError> {
        let mut tx = Sql::begin_then_lock(self).await?;
        Sql::<B>::forget_shared_before(&mut tx, "github_rosters", roster.confirmed_at).await?;
        sqlx::query(
            "INSERT INTO github_rosters (repo_id, owner_id, least_role, roles, started_at, confirmed_at, seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (repo_id) DO UPDATE SET owner_id = excluded.owner_id, least_role = excluded.least_role,
                 roles = excluded.roles, started_at = excluded.started_at, confirmed_at = excluded.confirmed_at,
                 seen = excluded.seen
             WHERE github_rosters.confirmed_at <= excluded.confirmed_at",
        )
        .bind(to_i64(roster.repo.0, "repository id")?)
        .bind(to_i64(roster.owner.0, "owner id")?)
        .bind(roster.least.as_str())
        .bind(roster.roles_json().as_deref())
        .bind(to_i64(roster.started_at.0, "time")?)
        .bind(to_i64(roster.confirmed_at.0, "time")?)
        .bind(to_i64(roster.seen, "invalidation")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn put_repo(&self, repo: &super::SharedRepo) -> Result<(), StoreError> {
        let mut tx = Sql::begin_then_lock(self).await?;
        Sql::<B>::forget_shared_before(&mut tx, "github_repos", repo.confirmed_at).await?;
        let (id, owner) = match repo.found {
            Some((id, owner)) => (Some(to_i64(id.0, "repository id")?), Some(to_i64(owner.0, "owner id")?)),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO github_repos (coords, repo_id, owner_id, renamed, not_installed, started_at, confirmed_at, seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (coords) DO UPDATE SET repo_id = excluded.repo_id, owner_id = excluded.owner_id,
                 renamed = excluded.renamed, not_installed = excluded.not_installed,
                 started_at = excluded.started_at, confirmed_at = excluded.confirmed_at, seen = excluded.seen
             WHERE github_repos.confirmed_at <= excluded.confirmed_at",
        )
        .bind(super::SharedRepo::key(&repo.coords))
        .bind(id)
        .bind(owner)
        .bind(i64::from(repo.renamed))
        .bind(i64::from(repo.not_installed))
        .bind(to_i64(repo.started_at.0, "time")?)
        .bind(to_i64(repo.confirmed_at.0, "time")?)
        .bind(to_i64(repo.seen, "invalidation")?)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn repo(&self, coords: &crate::core::ids::RepoCoords) -> Result<Option<super::SharedRepo>, StoreError> {
        // Nothing found: any repository's or owner's invalidation may be the one that made it.
        let row = sqlx::query(
            "SELECT r.repo_id, r.owner_id, r.renamed, r.not_installed, r.started_at, r.confirmed_at, r.seen
             FROM github_repos r
             WHERE r.coords = $1
               AND r.seen >= (SELECT COALESCE(MAX(seq), 0) FROM fact_invalidations) - $2
               AND NOT EXISTS (
                 SELECT 1 FROM fact_invalidations f WHERE f.seq > r.seen
                     AND (f.scope = 'all' OR r.repo_id IS NULL
                          OR (f.scope = 'owner' AND f.id = r.owner_id)
                          OR (f.scope = 'repo' AND f.id = r.repo_id)))",
        )
        .bind(super::SharedRepo::key(coords))
        .bind(to_i64(super::KEPT_FACT_INVALIDATIONS, "count")?)
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(unavailable);
        let get_o = |c: &str| row.try_get::<Option<i64>, _>(c).map_err(unavailable);
        let found = match (get_o("repo_id")?, get_o("owner_id")?) {
            (Some(id), Some(owner)) => Some((
                RepoId(to_u64(id, "repository id")?),
                crate::core::ids::OwnerId(to_u64(owner, "owner id")?),
            )),
            _ => None,
        };
        Ok(Some(super::SharedRepo {
            coords: coords.clone(),
            found,
            renamed: get_i("renamed")? != 0,
            not_installed: get_i("not_installed")? != 0,
            started_at: Timestamp(to_u64(get_i("started_at")?, "time")?),
            confirmed_at: Timestamp(to_u64(get_i("confirmed_at")?, "time")?),
            seen: to_u64(get_i("seen")?, "invalidation")?,
        }))
    }

    async fn roster(&self, repo: RepoId) -> Result<Option<super::SharedRoster>, StoreError> {
        let row = sqlx::query(
            "SELECT r.owner_id, r.least_role, r.roles, r.started_at, r.confirmed_at, r.seen FROM github_rosters r
             WHERE r.repo_id = $1
               AND r.seen >= (SELECT COALESCE(MAX(seq), 0) FROM fact_invalidations) - $2
               AND NOT EXISTS (
                 SELECT 1 FROM fact_invalidations f WHERE f.seq > r.seen
                     AND (f.scope = 'all' OR (f.scope = 'owner' AND f.id = r.owner_id)
                          OR (f.scope = 'repo' AND f.id = r.repo_id)))",
        )
        .bind(to_i64(repo.0, "repository id")?)
        .bind(to_i64(super::KEPT_FACT_INVALIDATIONS, "count")?)
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let get_i = |c: &str| row.try_get::<i64, _>(c).map_err(unavailable);
        let least: String = row.try_get("least_role").map_err(unavailable)?;
        let roles: Option<String> = row.try_get("roles").map_err(unavailable)?;
        Ok(Some(super::SharedRoster {
            repo,
            owner: crate::core::ids::OwnerId(to_u64(get_i("owner_id")?, "owner id")?),
            least: crate::core::policy::Role::parse(&least).ok_or_else(|| corrupt("a shared roster's role"))?,
            roles: roles.as_deref().map(super::SharedRoster::roles_from_json).transpose()?,
            started_at: Timestamp(to_u64(get_i("started_at")?, "time")?),
            confirmed_at: Timestamp(to_u64(get_i("confirmed_at")?, "time")?),
            seen: to_u64(get_i("seen")?, "invalidation")?,
        }))
    }
}}
