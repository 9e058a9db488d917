//! The functions' database user: a `LOGIN` member of [`WRITER_ROLE`] whose name and password
//! come from the functions' own secret. [`ensure_login_role`] creates it when it is missing and
//! otherwise sets its password (and membership) again, so a re-deploy or a changed secret
//! converges; it runs as the migration user, after the migrations.
//!
//! - The name is checked against a strict pattern before it reaches SQL, and quoted as an
//!   identifier by the server (`format('%I')`) all the same.
//! - The password never reaches the server in clear: what is sent is its SCRAM-SHA-256 verifier
//!   ([`crate::scram`], as `psql`'s `\password` does), which PostgreSQL stores as given. So the
//!   server's own logs (a failed or slow statement is logged with its text) cannot show it
//!   either. The verifier is quoted as a literal by the server (`format('%L')`).
//! - An existing role with powers a function must not have (superuser, CREATEROLE, CREATEDB,
//!   replication, BYPASSRLS), or the user running this, is refused rather than handed over.
//! - Runs in one transaction under the migrations' advisory lock; roles are cluster-wide while
//!   that lock is per database, so a creation that loses a race with another database's run is
//!   retried once, and then finds the role and sets its password.

use crate::scram::scram_sha256_verifier;
use crate::{MIGRATION_LOCK_KEY, WRITER_ROLE};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait, Value,
};
use secrecy::{ExposeSecret as _, SecretString};

/// PBKDF2 iterations of the verifier: PostgreSQL's default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;
/// Shortest password accepted: anything shorter was not generated for this.
pub const MIN_PASSWORD_LEN: usize = 16;
const MAX_PASSWORD_LEN: usize = 1024;

/// Why a login role could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum LoginRoleError {
    /// The user name is not a plain lowercase identifier, or names a role that is not a
    /// function's (`pg_*`, the writer group, `public`). Fix the secret's `username`.
    #[error(
        "login role name {0:?} is not allowed: use 1-63 of a-z, 0-9 and _, starting with a letter, and not pg_*, public or {WRITER_ROLE}"
    )]
    BadName(String),
    /// The password is too short, too long, or not printable ASCII. Fix the secret's `password`.
    #[error(
        "the login role's password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} printable ASCII characters (no spaces)"
    )]
    BadPassword,
    /// The role exists and is more than a function's user: the secret names the wrong user.
    #[error(
        "role {0} already exists as the migration user or with superuser, CREATEROLE, CREATEDB, replication or BYPASSRLS: it will not be made the functions' user"
    )]
    Privileged(String),
    /// The database refused or could not be reached.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// A function login to ensure. `Debug` shows the name only.
#[derive(Clone, Debug)]
pub struct LoginRole {
    name: String,
    password: SecretString,
}

impl LoginRole {
    /// Checks a name and password read from a secret.
    pub fn new(name: &str, password: &str) -> Result<Self, LoginRoleError> {
        let name_ok = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with("pg_")
            && name != "public"
            && name != WRITER_ROLE;
        if !name_ok {
            return Err(LoginRoleError::BadName(name.to_owned()));
        }
        // Printable ASCII without spaces: SASLprep leaves it unchanged, so the verifier
        // computed here is the one PostgreSQL checks a login against.
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.len())
            || !password.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(LoginRoleError::BadPassword);
        }
        Ok(Self {
            name: name.to_owned(),
            password: password.into(),
        })
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What [`ensure_login_role`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRoleOutcome {
    /// The role did not exist and was created.
    Created,
    /// The role existed; its password and membership were set again.
    Updated,
}

/// Creates the login role as a member of [`WRITER_ROLE`] if it is missing, or sets its
/// password (and membership) if it exists. Run after the migrations, which create the group.
pub async fn ensure_login_role(
    db: &DatabaseConnection,
    role: &LoginRole,
) -> Result<LoginRoleOutcome, LoginRoleError> {
    match ensure_once(db, role).await {
        // Another database's run may have created it between our check and our CREATE.
        Err(LoginRoleError::Db(_)) => ensure_once(db, role).await,
        other => other,
    }
}

async fn ensure_once(
    db: &DatabaseConnection,
    role: &LoginRole,
) -> Result<LoginRoleOutcome, LoginRoleError> {
    let txn = db.begin().await?;
    txn.execute_raw(stmt(
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await?;
    let existing = txn
        .query_one_raw(stmt(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls \
                 OR rolname = current_user OR rolname = session_user AS privileged \
             FROM pg_roles WHERE rolname = $1",
            [role.name.clone().into()],
        ))
        .await?;
    if let Some(row) = &existing
        && row.try_get::<bool>("", "privileged")?
    {
        return Err(LoginRoleError::Privileged(role.name.clone()));
    }
    let salt = server_random_salt(&txn).await?;
    let verifier = scram_sha256_verifier(role.password.expose_secret(), &salt, SCRAM_ITERATIONS);
    let (template, outcome) = match existing {
        None => (
            "CREATE ROLE %I WITH LOGIN INHERIT PASSWORD %L IN ROLE %I",
            LoginRoleOutcome::Created,
        ),
        Some(_) => (
            "ALTER ROLE %I WITH LOGIN INHERIT PASSWORD %L",
            LoginRoleOutcome::Updated,
        ),
    };
    let sql = formatted(
        &txn,
        template,
        [
            role.name.clone().into(),
            verifier.into(),
            WRITER_ROLE.into(),
        ],
    )
    .await?;
    txn.execute_unprepared(&sql).await?;
    if outcome == LoginRoleOutcome::Updated {
        let grant = formatted(
            &txn,
            "GRANT %I TO %I",
            [WRITER_ROLE.into(), role.name.clone().into()],
        )
        .await?;
        txn.execute_unprepared(&grant).await?;
    }
    txn.commit().await?;
    Ok(outcome)
}

fn stmt<const N: usize>(sql: &str, values: [Value; N]) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The statement the server builds from `template` with `format()`, quoting each argument
/// (`%I` as an identifier, `%L` as a literal). Utility statements take no bind parameters.
async fn formatted<const N: usize>(
    txn: &DatabaseTransaction,
    template: &str,
    args: [Value; N],
) -> Result<String, DbErr> {
    let placeholders: Vec<String> = (2..=N + 1).map(|i| format!("${i}::text")).collect();
    let sql = format!("SELECT format($1, {}) AS sql", placeholders.join(", "));
    let mut values = vec![Value::from(template)];
    values.extend(args);
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("format() returned no row".into()))?;
    row.try_get("", "sql")
}

/// A 16-byte salt (as PostgreSQL's own) from the server's strong random source: a version 4
/// UUID, built in since PostgreSQL 13 (122 random bits).
async fn server_random_salt(txn: &DatabaseTransaction) -> Result<Vec<u8>, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "SELECT replace(gen_random_uuid()::text, '-', '') AS salt",
            [],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("gen_random_uuid() returned no row".into()))?;
    let text: String = row.try_get("", "salt")?;
    salt_from_hex(&text)
        .ok_or_else(|| DbErr::Custom("gen_random_uuid() returned unexpected text".into()))
}

/// The 16 bytes a UUID's 32 hex digits (dashes removed) stand for; anything else is `None`.
fn salt_from_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok().filter(|salt| salt.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_salt_is_the_uuids_sixteen_bytes_and_other_text_is_refused() {
        assert_eq!(
            salt_from_hex("00ff10a0b1c2d3e4f5060708090a0b0c"),
            Some(vec![
                0x00, 0xff, 0x10, 0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5, 0x06, 0x07, 0x08, 0x09, 0x0a,
                0x0b, 0x0c
            ])
        );
        for bad in [
            "",
            "00ff10a0b1c2d3e4f5060708090a0b0",
            "00ff10a0b1c2d3e4f5060708090a0b0c00",
            "00ff10a0-b1c2-d3e4-f506-0708090a",
            "zzff10a0b1c2d3e4f5060708090a0b0c",
        ] {
            assert_eq!(salt_from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_and_passwords_are_checked_and_debug_hides_the_password() {
        let password = "Abcdefghijklmnop1234";
        let ok = LoginRole::new("inventory_app", password).expect("valid");
        assert_eq!(ok.name(), "inventory_app");
        assert!(!format!("{ok:?}").contains(password));
        for bad in [
            "",
            "Inventory",
            "1app",
            "app-1",
            "app\"; DROP ROLE postgres; --",
            "pg_app",
            "public",
            WRITER_ROLE,
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    LoginRole::new(bad, password),
                    Err(LoginRoleError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        for bad in [
            "short",
            "with space in it 123",
            "ünïcödé-password-123",
            "tab\tin-password-1234",
        ] {
            assert!(
                matches!(LoginRole::new("app", bad), Err(LoginRoleError::BadPassword)),
                "{bad:?}"
            );
        }
        let e = LoginRole::new("app", "hunter2").expect_err("short");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
