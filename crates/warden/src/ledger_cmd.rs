//! `warden ledger …`: the audit ledger's commands. Data goes to stdout (JSON where a program reads
//! it), diagnostics to stderr.

use std::io::{self, BufRead, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use warden_ledger::merkle::{self, Hash};
use warden_ledger::record::{MAX_LEAF_BYTES, hex};
use warden_ledger::{Ledger, Record, Store as _, VerifierKey, VerifyOptions};
use warden_ledger_sqlite::SqliteStore;

use crate::Outcome;
use crate::ledger_dir::{self, Access};

/// Longest JSON Lines line accepted on stdin (a record's canonical form is capped at 64 KiB).
const MAX_LINE_BYTES: usize = 1 << 20;
/// Records committed together at most, when appending a stream.
const MAX_STREAM_BATCH: usize = 65_536;
/// Parsed chunks (of up to 256 records) the parser may run ahead of the committing thread: enough
/// to keep parsing through the fsync of a full batch (about 2 x 65,536 records, ~50 MB at most).
const PARSED_CHUNKS_IN_FLIGHT: usize = 512;

#[derive(Debug, Args)]
pub(crate) struct LedgerArgs {
    /// The ledger directory [default: $XDG_DATA_HOME/warden/ledger].
    #[arg(long, global = true, env = "WARDEN_LEDGER", value_name = "DIR")]
    ledger: Option<PathBuf>,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Create a new ledger and its Ed25519 signing key; prints the verifier key to publish.
    Init {
        /// The log's origin: the first line of its checkpoints and the name of its key.
        #[arg(long, value_name = "NAME")]
        origin: Option<String>,
    },
    /// Print the public verifier key (`<name>+<key id>+<base64 key>`).
    Key,
    /// Append one record (from flags or --record), or JSON Lines records from stdin.
    ///
    /// Each record is an object {kind, actor, time?, subjects?, payload?}; kinds: decision,
    /// escalation, review, containment, evidence, gate, note. An index is printed only once the
    /// record is durable. A signed checkpoint of the new tree is stored afterwards.
    Append(AppendArgs),
    /// Print a record with its index and leaf hash.
    Get {
        #[arg(long)]
        index: u64,
        /// One line of compact JSON instead of pretty JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print an inclusion proof (--index, --size) or a consistency proof (--from, --to) as JSON.
    Prove(ProveArgs),
    /// Print the latest signed checkpoint, byte-exact; signs a new one first if the log has grown.
    Checkpoint,
    /// Re-derive every leaf hash and the tree from the stored records and check them against the
    /// stored hashes and every signed checkpoint. Exit status 1 when anything does not match.
    Verify(VerifyArgs),
    /// Write every record as JSON Lines: {index, leaf (base64 of the hashed bytes), leaf_hash}.
    Export {
        /// First index to export.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Export up to (not including) this index [default: the tree size].
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct AppendArgs {
    /// Record kind (decision, escalation, review, containment, evidence, gate, note).
    #[arg(long, requires = "actor", conflicts_with = "record")]
    kind: Option<String>,
    /// Who or what made the record, e.g. `monitor:fmnist-v3` or `user:alice`.
    #[arg(long)]
    actor: Option<String>,
    /// When it happened (RFC 3339) [default: now].
    #[arg(long)]
    time: Option<String>,
    /// An artefact the record is about, as NAME=sha256:HEX; repeatable.
    #[arg(long = "subject", value_name = "NAME=DIGEST")]
    subjects: Vec<String>,
    /// The payload, a JSON object.
    #[arg(long)]
    payload: Option<String>,
    /// A whole record as one JSON object.
    #[arg(long)]
    record: Option<String>,
    /// Print one JSON line per appended record: {"index", "leaf_hash"}.
    #[arg(long)]
    json: bool,
    /// Do not sign a checkpoint after appending.
    #[arg(long)]
    no_checkpoint: bool,
}

#[derive(Debug, Args)]
struct ProveArgs {
    /// Prove inclusion of the record at this index.
    #[arg(long, conflicts_with_all = ["from", "to"], required_unless_present = "from")]
    index: Option<u64>,
    /// Tree size to prove inclusion in [default: the current size].
    #[arg(long, requires = "index")]
    size: Option<u64>,
    /// Prove consistency from this tree size…
    #[arg(long, requires = "to")]
    from: Option<u64>,
    /// …to this one.
    #[arg(long, requires = "from")]
    to: Option<u64>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// A signed checkpoint held outside the ledger (a file); repeatable.
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// The verifier key to trust, as text [default: the key stored in the ledger].
    #[arg(long, conflicts_with = "key_file")]
    key: Option<String>,
    /// The verifier key to trust, from a file.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Skip checking that every record decodes and is canonical (hashes are still all checked).
    #[arg(long)]
    skip_record_check: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: LedgerArgs) -> Result<Outcome> {
    let dir = args.ledger.unwrap_or_else(ledger_dir::default_dir);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let outcome = match args.command {
        LedgerCommand::Init { origin } => init(&dir, origin, &mut out)?,
        LedgerCommand::Key => {
            let store = ledger_dir::open_store(&dir, Access::ReadOnly)?;
            let meta = warden_ledger::Store::meta(&store)?;
            writeln!(out, "{}", meta.verifier_key)?;
            Outcome::Ok
        }
        LedgerCommand::Append(a) => append(&dir, a, &mut out)?,
        LedgerCommand::Get { index, json } => {
            // Straight from the store: a damaged hash elsewhere must not hide a record.
            let store = ledger_dir::open_store(&dir, Access::ReadOnly)?;
            let size = store.size()?;
            if index >= size {
                bail!("index {index} is not below the tree size {size}");
            }
            let leaf = store.entry(index)?.ok_or_else(|| {
                anyhow!("record {index} is missing from storage; run `warden ledger verify`")
            })?;
            let record = Record::from_leaf(&leaf).with_context(|| {
                format!("record {index} is damaged; run `warden ledger verify`")
            })?;
            let v = json!({
                "index": index,
                "leaf_hash": B64.encode(merkle::leaf_hash(&leaf)),
                "record": record.to_value(),
            });
            if json {
                serde_json::to_writer(&mut out, &v)?;
            } else {
                serde_json::to_writer_pretty(&mut out, &v)?;
            }
            writeln!(out)?;
            Outcome::Ok
        }
        LedgerCommand::Prove(p) => prove(&dir, p, &mut out)?,
        LedgerCommand::Checkpoint => {
            let ledger = ledger_dir::open(&dir, Access::ReadWrite, true)?;
            out.write_all(ledger.checkpoint()?.as_bytes())?;
            Outcome::Ok
        }
        LedgerCommand::Verify(v) => verify(&dir, v, &mut out)?,
        LedgerCommand::Export { from, to } => {
            // Records only, straight from the store, so an auditor can export a damaged ledger.
            let store = ledger_dir::open_store(&dir, Access::ReadOnly)?;
            let end = to.unwrap_or(u64::MAX).min(store.size()?);
            let mut werr = None;
            warden_ledger::scan_records(&store, from, end, &mut |i, leaf| {
                let line = json!({
                    "index": i,
                    "leaf": B64.encode(leaf),
                    "leaf_hash": B64.encode(merkle::leaf_hash(leaf)),
                });
                match serde_json::to_writer(&mut out, &line)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                {
                    Ok(()) => true,
                    Err(e) => {
                        werr = Some(e);
                        false
                    }
                }
            })?;
            if let Some(e) = werr {
                return Err(e.into());
            }
            Outcome::Ok
        }
    };
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(outcome),
    }
}

fn init(dir: &Path, origin: Option<String>, out: &mut impl Write) -> Result<Outcome> {
    let origin = match origin {
        Some(o) => o,
        None => {
            let mut id = [0u8; 6];
            getrandom::getrandom(&mut id)
                .map_err(|e| anyhow!("cannot get randomness for the origin: {e}"))?;
            format!("warden.local/ledger/{}", hex(&id))
        }
    };
    let ledger = ledger_dir::create(dir, &origin)?;
    writeln!(out, "{}", ledger.verifier().to_text())?;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "created ledger {} at {}\nthe line above is its verifier key: publish it, and keep checkpoints (`warden ledger checkpoint`) outside the ledger",
            origin,
            dir.display()
        );
    }
    Ok(Outcome::Ok)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn single_record(a: &AppendArgs) -> Result<Option<Record>> {
    if let Some(text) = &a.record {
        return Ok(Some(Record::from_json(text.as_bytes(), now_ms())?));
    }
    let Some(kind) = &a.kind else {
        if a.actor.is_some() || a.time.is_some() || !a.subjects.is_empty() || a.payload.is_some() {
            bail!(
                "--actor, --time, --subject and --payload need --kind\nhint: or give a whole record with --record, or JSON Lines on stdin"
            );
        }
        return Ok(None);
    };
    let mut subjects = Vec::new();
    for s in &a.subjects {
        let (name, digest) = s
            .split_once('=')
            .ok_or_else(|| anyhow!("--subject {s:?}: expected NAME=sha256:HEX"))?;
        subjects.push(json!({ "name": name, "digest": digest }));
    }
    let v = json!({
        "kind": kind,
        "actor": a.actor,
        "time": a.time,
        "subjects": subjects,
    });
    let mut text = serde_json::to_string(&v)?;
    if let Some(p) = &a.payload {
        // Splice the payload's own text in, after checking it is exactly one JSON value, so that
        // it is judged as on every other path (duplicate keys refused, not silently collapsed).
        serde_json::from_str::<serde::de::IgnoredAny>(p).context("--payload is not valid JSON")?;
        text.pop();
        text.push_str(",\"payload\":");
        text.push_str(p);
        text.push('}');
    }
    Ok(Some(Record::from_json(text.as_bytes(), now_ms())?))
}

/// Canonical leaves parsed from the stream, packed in one buffer, with their leaf hashes.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Where each leaf ends in `bytes`.
    ends: Vec<usize>,
    hashes: Vec<Hash>,
}

impl Chunk {
    const RECORDS: usize = 256;

    fn with_capacity() -> Chunk {
        Chunk {
            bytes: Vec::with_capacity(Self::RECORDS * 512),
            ends: Vec::with_capacity(Self::RECORDS),
            hashes: Vec::with_capacity(Self::RECORDS),
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn leaves(&self) -> impl Iterator<Item = (&[u8], Hash)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .zip(&self.hashes)
            .map(|((s, &e), h)| (&self.bytes[s..e], *h))
    }
}

/// A chunk of the stream, or the reason the stream stopped.
type Parsed = Result<Chunk, String>;

fn append(dir: &Path, a: AppendArgs, out: &mut impl Write) -> Result<Outcome> {
    let single = single_record(&a)?;
    let access = if single.is_some() {
        Access::ReadWrite
    } else {
        Access::Bulk
    };
    let ledger = ledger_dir::open(dir, access, !a.no_checkpoint)?;
    let (count, first, stream_error) = match single {
        Some(record) => {
            let index = ledger.append(&record)?;
            if a.json {
                let leaf_hash = merkle::leaf_hash(&record.to_leaf());
                writeln!(
                    out,
                    "{}",
                    json!({ "index": index, "leaf_hash": B64.encode(leaf_hash) })
                )?;
            }
            (1, Some(index), None)
        }
        None => append_stream(
            &ledger,
            io::BufReader::with_capacity(1 << 16, io::stdin()),
            a.json,
            out,
        )?,
    };
    let size = ledger.size();
    if !a.no_checkpoint {
        if ledger.can_sign() {
            ledger
                .checkpoint()
                .context("records are stored, but signing the checkpoint failed")?;
        } else {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "note: no signing key in this ledger directory, so no checkpoint was signed"
                );
            }
        }
    }
    out.flush()?;
    #[allow(clippy::print_stderr)]
    match (first, count) {
        (Some(f), n) if n > 0 => eprintln!(
            "appended {n} record(s), indexes {f}..={}; tree size {size}",
            f + n - 1
        ),
        _ => eprintln!("appended no records; tree size {size}"),
    }
    if let Some(e) = stream_error {
        bail!("{e}\nrecords before that line were appended; nothing after it was");
    }
    Ok(Outcome::Ok)
}

/// Appends JSON Lines from `input`: one thread parses, canonicalises and hashes while this one commits
/// whatever has arrived, so a slow producer gets each record acknowledged promptly and a fast one gets
/// large group commits. Returns (records appended, first index, the error that stopped the stream).
pub(crate) fn append_stream(
    ledger: &Ledger<SqliteStore>,
    input: io::BufReader<impl io::Read + Send>,
    json_out: bool,
    out: &mut impl Write,
) -> Result<(u64, Option<u64>, Option<String>)> {
    let (tx, rx) = mpsc::sync_channel::<Parsed>(PARSED_CHUNKS_IN_FLIGHT);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("warden-parse".into())
            .spawn_scoped(scope, move || parse_lines(input, &tx))
            .context("cannot start the parser thread")?;
        let mut count = 0u64;
        let mut first = None;
        let mut error = None;
        let mut batch: Vec<Chunk> = Vec::new();
        let mut batched = 0;
        'outer: while let Ok(msg) = rx.recv() {
            let mut msg = Some(msg);
            // Take everything already parsed, up to the batch limit.
            while let Some(m) = msg.take() {
                match m {
                    Ok(chunk) => {
                        batched += chunk.len();
                        batch.push(chunk);
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
                if batched >= MAX_STREAM_BATCH {
                    break;
                }
                msg = rx.try_recv().ok();
            }
            if batched > 0 {
                let refs: Vec<(&[u8], Hash)> = batch.iter().flat_map(Chunk::leaves).collect();
                let start = ledger.append_batch(&refs)?;
                first.get_or_insert(start);
                if json_out {
                    for (i, (_, h)) in refs.iter().enumerate() {
                        writeln!(
                            out,
                            "{{\"index\":{},\"leaf_hash\":\"{}\"}}",
                            start + i as u64,
                            B64.encode(h)
                        )?;
                    }
                    out.flush()?;
                }
                count += refs.len() as u64;
                drop(refs);
                batch.clear();
                batched = 0;
            }
            if error.is_some() {
                break 'outer;
            }
        }
        Ok((count, first, error))
    })
}

fn parse_lines<R: io::Read>(mut input: io::BufReader<R>, tx: &mpsc::SyncSender<Parsed>) {
    let mut chunk = Chunk::with_capacity();
    let mut line = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    let now = now_ms();
    loop {
        line.clear();
        line_no += 1;
        let n = match (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(format!("cannot read stdin: {e}")));
                return;
            }
        };
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            let _ = tx.send(Err(format!(
                "stdin line {line_no}: longer than {MAX_LINE_BYTES} bytes"
            )));
            return;
        }
        let text = line.trim_ascii();
        if !text.is_empty() {
            if text.len() > MAX_LEAF_BYTES {
                let _ = tx.send(Err(format!(
                    "stdin line {line_no}: record is {} bytes, the limit is {MAX_LEAF_BYTES}",
                    text.len()
                )));
                return;
            }
            let start = chunk.bytes.len();
            match Record::append_canonical_leaf(text, now, &mut chunk.bytes) {
                Ok(()) => {
                    chunk.hashes.push(merkle::leaf_hash(&chunk.bytes[start..]));
                    chunk.ends.push(chunk.bytes.len());
                }
                Err(e) => {
                    if chunk.len() > 0 {
                        let _ = tx.send(Ok(std::mem::take(&mut chunk)));
                    }
                    let _ = tx.send(Err(format!("stdin line {line_no}: {e}")));
                    return;
                }
            }
        }
        // Hand over what we have when the chunk is full or the next read would wait for input.
        let hand_over =
            chunk.len() > 0 && (chunk.len() >= Chunk::RECORDS || input.buffer().is_empty());
        if hand_over
            && tx
                .send(Ok(std::mem::replace(&mut chunk, Chunk::with_capacity())))
                .is_err()
        {
            return;
        }
    }
    if chunk.len() > 0 {
        let _ = tx.send(Ok(chunk));
    }
}

fn prove(dir: &Path, p: ProveArgs, out: &mut impl Write) -> Result<Outcome> {
    let ledger = ledger_dir::open(dir, Access::ReadOnly, false)?;
    let b64s = |hs: &[Hash]| hs.iter().map(|h| B64.encode(h)).collect::<Vec<_>>();
    let v = match (p.index, p.from, p.to) {
        (Some(index), _, _) => {
            let size = p.size.unwrap_or_else(|| ledger.size());
            let proof = ledger.inclusion_proof(index, size)?;
            let leaf = ledger.get(index)?;
            json!({
                "leafIdx": index,
                "treeSize": size,
                "root": B64.encode(ledger.root_at(size)?),
                "leafHash": B64.encode(merkle::leaf_hash(&leaf)),
                "proof": b64s(&proof),
            })
        }
        (None, Some(from), Some(to)) => {
            let proof = ledger.consistency_proof(from, to)?;
            json!({
                "size1": from,
                "size2": to,
                "root1": B64.encode(ledger.root_at(from)?),
                "root2": B64.encode(ledger.root_at(to)?),
                "proof": b64s(&proof),
            })
        }
        _ => bail!("give --index N [--size M] for inclusion, or --from M --to N for consistency"),
    };
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(Outcome::Ok)
}

fn read_limited(path: &Path, limit: u64) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut s = String::new();
    f.take(limit + 1)
        .read_to_string(&mut s)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
    if s.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(s)
}

fn verify(dir: &Path, v: VerifyArgs, out: &mut impl Write) -> Result<Outcome> {
    let store = ledger_dir::open_store(dir, Access::ReadOnly)?;
    let trusted_key = match (&v.key, &v.key_file) {
        (Some(k), _) => Some(VerifierKey::parse(k).context("--key")?),
        (None, Some(f)) => Some(
            VerifierKey::parse(&read_limited(f, 4096)?)
                .with_context(|| format!("--key-file {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let mut checkpoints = Vec::new();
    for f in &v.checkpoints {
        checkpoints.push(read_limited(f, warden_ledger::note::MAX_NOTE_BYTES as u64)?);
    }
    let opts = VerifyOptions {
        trusted_key: trusted_key.clone(),
        checkpoints,
        check_records: !v.skip_record_check,
    };
    let report = warden_ledger::verify(&store, &opts)?;
    if v.json {
        let problems: Vec<Value> = report
            .problems
            .iter()
            .map(|p| json!({ "index": p.index, "message": p.message }))
            .collect();
        serde_json::to_writer(
            &mut *out,
            &json!({
                "ok": report.is_ok(),
                "recorded_size": report.recorded_size,
                "records_checked": report.records_checked,
                "root": B64.encode(report.root),
                "checkpoints_ok": report.checkpoints_ok,
                "latest_checkpoint_size": report.latest_checkpoint_size,
                "first_bad_index": report.first_bad_index(),
                "trusted_key": trusted_key.is_some(),
                "problems": problems,
            }),
        )?;
        writeln!(out)?;
    } else if report.is_ok() {
        if report.checkpoints_ok == 0 || report.latest_checkpoint_size < report.records_checked {
            writeln!(
                out,
                "note: records {}.. are not covered by any signed checkpoint yet; hint: `warden ledger checkpoint`",
                report.latest_checkpoint_size
            )?;
        }
        writeln!(
            out,
            "ok: {} records, root {}, {} signed checkpoint(s) hold (latest at size {}){}",
            report.records_checked,
            B64.encode(report.root),
            report.checkpoints_ok,
            report.latest_checkpoint_size,
            if trusted_key.is_some() {
                ""
            } else {
                "\nnote: checked with the key stored in the ledger; pass --key to pin your own copy"
            }
        )?;
    } else {
        writeln!(out, "FAILED: {} problem(s)", report.problems.len())?;
        if let Some(i) = report.first_bad_index() {
            writeln!(out, "first bad record: {i}")?;
        }
        for p in &report.problems {
            writeln!(out, "- {}", p.message)?;
        }
    }
    Ok(if report.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
