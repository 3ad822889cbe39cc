//! Where a ledger lives on disk: a directory holding `ledger.db` (the SQLite store), `signer.key` (the
//! Ed25519 signing key, owner-only) and `verifier.pub` (the public verifier key, to publish).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use warden_ledger::{Ledger, SignerKey};
use warden_ledger_sqlite::{SqliteOptions, SqliteStore};

pub(crate) const DB_FILE: &str = "ledger.db";
pub(crate) const KEY_FILE: &str = "signer.key";
pub(crate) const PUB_FILE: &str = "verifier.pub";

/// The default ledger directory: `$XDG_DATA_HOME/warden/ledger`, else `~/.local/share/warden/ledger`.
pub(crate) fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("warden/ledger")
}

/// Creates a new ledger in `dir` (created owner-only if missing; must not hold a ledger already).
pub(crate) fn create(dir: &Path, origin: &str) -> Result<Ledger<SqliteStore>> {
    let db = dir.join(DB_FILE);
    if db.exists() {
        bail!(
            "a ledger already exists at {}\nhint: use another --ledger directory",
            dir.display()
        );
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the ledger directory {}", dir.display()))?;
    let signer = SignerKey::generate(origin)?;
    write_private(&dir.join(KEY_FILE), signer.to_text().as_bytes())?;
    fs::write(
        dir.join(PUB_FILE),
        format!("{}\n", signer.verifier().to_text()),
    )
    .with_context(|| format!("cannot write {}", dir.join(PUB_FILE).display()))?;
    let store = SqliteStore::create(&db)?;
    Ok(Ledger::create(store, signer)?)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Reads the signing key, refusing one that others can read.
pub(crate) fn load_signer(dir: &Path) -> Result<Option<SignerKey>> {
    let path = dir.join(KEY_FILE);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.is_file() {
        bail!("the signing key {} is not a regular file", path.display());
    }
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the signing key {} can be read by others (mode {:o})\nhint: chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
    if meta.len() > 4096 {
        bail!("{} is too large to be a signing key", path.display());
    }
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(SignerKey::parse(text.trim()).with_context(|| {
        format!("bad signing key in {}", path.display())
    })?))
}

/// How a command uses the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
    /// Appending a stream: see [`SqliteOptions::bulk`].
    Bulk,
}

/// Opens the store of the ledger in `dir`.
pub(crate) fn open_store(dir: &Path, access: Access) -> Result<SqliteStore> {
    let db = dir.join(DB_FILE);
    if dir.exists() && !dir.is_dir() {
        bail!(
            "--ledger {} is a file; expected the ledger's directory (the one holding ledger.db)",
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "no ledger at {}: no such directory\nhint: create one with `warden ledger init --ledger {}`",
            dir.display(),
            dir.display()
        );
    }
    let opts = SqliteOptions {
        read_only: access == Access::ReadOnly,
        bulk: access == Access::Bulk,
        ..SqliteOptions::default()
    };
    // A writer that crashed while appending a stream leaves a hot rollback journal, which only a
    // read-write connection can roll back. Do that first, so read-only commands keep working.
    let journal = dir.join(format!("{DB_FILE}-journal"));
    if access == Access::ReadOnly && fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
        let _ = SqliteStore::open(&db, &SqliteOptions::default())
            .and_then(|s| warden_ledger::Store::size(&s));
    }
    match SqliteStore::open(&db, &opts) {
        Err(warden_ledger::StoreError::ReadOnly) if access == Access::ReadOnly => bail!(
            "{} has an unfinished transaction from a writer that stopped (a hot journal), and this user cannot roll it back\nhint: run any read-write command (e.g. `warden ledger checkpoint`) as a user who can write the ledger",
            db.display()
        ),
        other => Ok(other?),
    }
}

/// Opens the ledger in `dir`, with its signing key when `signing` and the key is present.
pub(crate) fn open(dir: &Path, access: Access, signing: bool) -> Result<Ledger<SqliteStore>> {
    let store = open_store(dir, access)?;
    let signer = if signing { load_signer(dir)? } else { None };
    Ok(Ledger::open(store, signer)?)
}

/// Appends one evidence-style `record` (JSON, without a time: now is used) to the ledger in `dir`
/// (the default one when None), signs a checkpoint when the directory holds the key, and says on
/// stderr where it went. Returns the record's index.
pub(crate) fn record_now(dir: Option<&Path>, record: serde_json::Value) -> Result<u64> {
    let dir = dir.map_or_else(default_dir, Path::to_path_buf);
    let ledger = open(&dir, Access::ReadWrite, true)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let index = ledger.append(&warden_ledger::Record::from_value(record, now)?)?;
    #[allow(clippy::print_stderr)]
    if ledger.can_sign() {
        ledger.checkpoint()?;
    } else {
        eprintln!("note: no signing key in this ledger directory, so no checkpoint was signed");
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("recorded as ledger record {index} in {}", dir.display());
    }
    Ok(index)
}
