//! Fuzzes what a `ferry sync` peer parses from the other: the binary groups
//! of a `sync_tree` body, a manifest line with its sync fields, and the
//! check that a symlink stays inside the destination. None may panic; a
//! parsed group is within the caps, and a link judged inside never climbs
//! above the top once its names are resolved.

#![no_main]

use ferry::engine::hash_tree::MAX_FAN_OUT;
use ferry::engine::sync::delta::parse_groups;
use ferry::engine::sync::receive::link_stays_inside;
use ferry::engine::wire::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let groups = usize::from(selector / 3);
            if let Ok(parsed) = parse_groups(rest, groups) {
                assert_eq!(parsed.len(), groups);
                for (_, children) in parsed {
                    assert!(children.len() <= MAX_FAN_OUT);
                }
            }
        }
        1 => {
            if let Ok(entry) = serde_json::from_slice::<Entry>(rest) {
                let _ = entry.link_target().map(|t| t.to_bytes());
                let _ = entry.content_hash();
                let _ = entry.check_times();
            }
        }
        _ => {
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let (path, target) = (&rest[..split], rest.get(split + 1..).unwrap_or_default());
            if link_stays_inside(path, target).is_ok() {
                let mut depth = path.split(|&b| b == b'/').filter(|n| !n.is_empty() && *n != b".").count() as i64 - 1;
                for name in target.split(|&b| b == b'/') {
                    match name {
                        b"" | b"." => {}
                        b".." => depth -= 1,
                        _ => depth += 1,
                    }
                    assert!(depth >= 0, "{path:?} -> {target:?} climbs out");
                }
            }
        }
    }
});
