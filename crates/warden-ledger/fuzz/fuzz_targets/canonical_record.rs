//! Fuzz target: the canonical encoding is a fixed point. For any input the record parser accepts, the
//! leaf it produces must pass `check_leaf` (what `verify` applies to every stored record), parse back
//! to the same leaf, and decode to a `Record` that encodes to the same bytes. A failure here would
//! make `verify` report an honest record as damaged, or let two encodings of one record exist.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_ledger::Record;
use warden_ledger::record::check_leaf;

fuzz_target!(|data: &[u8]| {
    let Ok(leaf) = Record::canonical_leaf(data, 1_795_000_000_000) else { return };
    if let Err(e) = check_leaf(&leaf) {
        panic!("accepted input produced a leaf verify rejects: {e}\nleaf: {}", String::from_utf8_lossy(&leaf));
    }
    let again = Record::canonical_leaf(&leaf, 0).expect("a canonical leaf parses");
    assert_eq!(again, leaf, "canonical form is not a fixed point");
    let record = Record::from_leaf(&leaf).expect("a canonical leaf decodes");
    assert_eq!(record.to_leaf(), leaf, "decoding and encoding changed the leaf");
});
