//! A tree of hashes over a file's chunk list, so two peers find the chunks
//! that differ by comparing from the top: an unchanged region costs one
//! hash, not one per chunk.
//!
//! The leaves are the chunks (their BLAKE3 and length); each node above
//! hashes its children's hashes and byte counts. Where a node ends is decided
//! by content, not position: a child whose hash is 0 modulo [`FAN_OUT`] closes
//! its node (with at least two children and at most [`MAX_FAN_OUT`]). So an
//! insertion that adds a chunk changes the nodes on its path to the root and
//! no others; a tree grouped by position would shift every node after it.
//!
//! The compare is set-based: the receiver knows the hashes of every node of
//! its own trees, and asks only about nodes it does not know, so a region
//! that moved (or came from another file) costs one hash too. [`diff`] plays
//! the whole exchange locally, counting the hashes one peer would send.
//!
//! Pure code: no files, no network, no clock.

use std::collections::HashSet;
use std::ops::Range;

use super::chunks::{Chunk, Hash32};

/// The average number of children of a node. Each level of the compare
/// costs a round trip and an expanded node sends all its children, so the
/// fan-out trades depth (16: 4 levels over a 1 GiB file's 16,384 chunks)
/// against the hashes an edit costs (about 16 per level it touches).
pub const FAN_OUT: usize = 16;

/// The most children a node takes when no content boundary comes: eight
/// times the average, reached about once in 3,000 nodes, so a run of
/// unlucky hashes still builds a node of bounded size.
pub const MAX_FAN_OUT: usize = 8 * FAN_OUT;

/// A node's hash key, so a node can never pass for a chunk.
const NODE_CONTEXT: &str = "ferry 2026 sync hash tree node v1";

/// One node of the tree; a leaf is one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The chunk's BLAKE3 for a leaf; for a node, the hash of its children.
    pub hash: Hash32,
    /// The bytes of file beneath it.
    pub bytes: u64,
    /// Its first chunk's index in the chunk list.
    pub first_chunk: usize,
    /// How many chunks are beneath it.
    pub chunk_count: usize,
    /// Its first child's index in the level below (0 for a leaf).
    pub first_child: usize,
    /// How many children it has (0 for a leaf).
    pub child_count: usize,
}

/// The tree over one file's chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// `levels[0]` holds the leaves; the last level holds the root alone
    /// (or nothing, for an empty file).
    levels: Vec<Vec<Node>>,
}

impl Tree {
    /// Builds the tree over `chunks`, in file order.
    pub fn build(chunks: &[Chunk]) -> Tree {
        let mut first_chunk = 0;
        let leaves: Vec<Node> = chunks
            .iter()
            .map(|chunk| {
                let leaf = Node {
                    hash: chunk.hash,
                    bytes: u64::from(chunk.len),
                    first_chunk,
                    chunk_count: 1,
                    first_child: 0,
                    child_count: 0,
                };
                first_chunk += 1;
                leaf
            })
            .collect();
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let above = group(levels.len(), levels.last().expect("a level"));
            levels.push(above);
        }
        Tree { levels }
    }

    /// The root's hash. Two files with the same root have the same chunks;
    /// an empty file's root is the hash of a node without children.
    pub fn root(&self) -> Hash32 {
        match self.levels.last().and_then(|level| level.first()) {
            Some(root) => root.hash,
            None => node_hash(1, &[]),
        }
    }

    /// The number of levels, leaves included (1 for a file of one chunk).
    pub fn height(&self) -> usize {
        self.levels.len()
    }

    /// The root node, if the file has any chunk.
    pub fn root_node(&self) -> Option<(usize, &Node)> {
        let top = self.levels.len() - 1;
        self.levels[top].first().map(|node| (top, node))
    }

    /// The children of `node` on `level`, one level down; `node` must come
    /// from this tree (a peer's node is checked against its hash first).
    pub fn children(&self, level: usize, node: &Node) -> &[Node] {
        if level == 0 {
            return &[];
        }
        &self.levels[level - 1][node.first_child..node.first_child + node.child_count]
    }

    /// Every node with its level (0 for leaves), bottom up.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(level, nodes)| nodes.iter().map(move |node| (level, node)))
    }

    /// Every hash in the tree, leaves and nodes: what a receiver knows.
    pub fn node_hashes(&self) -> HashSet<Hash32> {
        self.levels.iter().flatten().map(|node| node.hash).collect()
    }
}

/// Groups one level's nodes into the level above, closing a node at a
/// content boundary. A node takes at least two children, so every level is
/// at most half the one below and the build ends.
fn group(level: usize, below: &[Node]) -> Vec<Node> {
    let mut above = Vec::with_capacity(below.len() / FAN_OUT + 1);
    let mut start = 0;
    for (i, child) in below.iter().enumerate() {
        let taken = i + 1 - start;
        let at_boundary = taken >= 2 && is_boundary(&child.hash);
        if at_boundary || taken == MAX_FAN_OUT || i + 1 == below.len() {
            let children = &below[start..=i];
            above.push(Node {
                hash: node_hash(level, children),
                bytes: children.iter().map(|c| c.bytes).sum(),
                first_chunk: children[0].first_chunk,
                chunk_count: children.iter().map(|c| c.chunk_count).sum(),
                first_child: start,
                child_count: children.len(),
            });
            start = i + 1;
        }
    }
    above
}

fn is_boundary(hash: &Hash32) -> bool {
    let low = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]);
    (low as usize).is_multiple_of(FAN_OUT)
}

/// The hash a node on `level` has over `children` (hash and byte count
/// each), so a receiver can check a peer's children against the node it
/// asked to open.
pub fn parent_hash(level: usize, children: &[(Hash32, u64)]) -> Hash32 {
    let mut hasher = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    hasher.update(&(level as u64).to_le_bytes());
    for (hash, bytes) in children {
        hasher.update(hash);
        hasher.update(&bytes.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

fn node_hash(level: usize, children: &[Node]) -> Hash32 {
    let mut hasher = blake3::Hasher::new_derive_key(NODE_CONTEXT);
    hasher.update(&(level as u64).to_le_bytes());
    for child in children {
        hasher.update(&child.hash);
        hasher.update(&child.bytes.to_le_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// What a top-down compare found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeDiff {
    /// The ranges of the source's chunks that the receiver lacks, in order,
    /// adjacent ranges merged.
    pub missing: Vec<Range<usize>>,
    /// The hashes the source sent: the root, then every child of each node
    /// the receiver asked to open.
    pub hashes_sent: usize,
    /// The nodes the receiver asked to open, one bit each on the wire.
    pub nodes_opened: usize,
}

impl TreeDiff {
    /// The number of chunks the receiver lacks.
    pub fn missing_chunks(&self) -> usize {
        self.missing.iter().map(|range| range.len()).sum()
    }
}

/// Plays the top-down exchange of `source` against a receiver that knows the
/// hashes in `known` ([`Tree::node_hashes`] of one or more of its files):
/// the source sends its root; while the receiver meets a hash it does not
/// know, it asks for that node's children; a leaf it does not know is a
/// chunk it must be sent.
pub fn diff(source: &Tree, known: &HashSet<Hash32>) -> TreeDiff {
    let mut result = TreeDiff {
        hashes_sent: 1,
        ..TreeDiff::default()
    };
    let Some((top, root)) = source.root_node() else {
        return result;
    };
    if known.contains(&root.hash) {
        return result;
    }
    let mut to_open = vec![*root];
    let mut level = top;
    while level > 0 && !to_open.is_empty() {
        let mut next = Vec::new();
        for node in &to_open {
            result.nodes_opened += 1;
            let children = source.children(level, node);
            result.hashes_sent += children.len();
            next.extend(
                children
                    .iter()
                    .filter(|c| !known.contains(&c.hash))
                    .copied(),
            );
        }
        to_open = next;
        level -= 1;
    }
    // What is left unknown is on the leaf level: chunks to send.
    let mut missing_chunks: Vec<usize> = to_open.iter().map(|leaf| leaf.first_chunk).collect();
    missing_chunks.sort_unstable();
    for index in missing_chunks {
        match result.missing.last_mut() {
            Some(range) if range.end == index => range.end += 1,
            _ => result.missing.push(index..index + 1),
        }
    }
    result
}

/// [`diff`] of a new file's tree against the old file's.
pub fn diff_trees(new: &Tree, old: &Tree) -> TreeDiff {
    diff(new, &old.node_hashes())
}

#[cfg(test)]
mod tests;
