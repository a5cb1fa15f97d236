//! The binary model format.
//!
//! Layout (all integers little-endian):
//! ```text
//! "VGIF" | version u16 | n_features u32 | n_trees u32 | psi u64
//! | max_samples: tag u8 (0 auto, 1 count, 2 fraction) + 8 bytes (u64 count / f64 fraction / 0)
//! | max_features f64 | bootstrap u8 | contamination: tag u8 (0 auto, 1 fraction) + f64
//! | seed u64 | offset f64 | total_nodes u32
//! | trees, each in preorder: internal = varint(feature + 1) + threshold f64; leaf = 0 + varint(size)
//! | crc32 of everything before it, u32
//! ```
//! Leaves store their sample count rather than their path length: the length is recomputed as
//! `depth + c(size)` with the same function the fit used, so a round trip is bit-exact and a
//! forest of 100 trees at ψ = 256 takes ~100–200 KB. Decoding validates every structural
//! invariant scoring relies on (child indices, feature range, depth limit, leaf sizes summing to
//! ψ), so no input can make scoring panic.
//!
//! Any change to this layout must bump [`FORMAT_VERSION`]; older versions are rejected with an
//! explicit error rather than misread.

use crate::stats::{PathLengthTable, average_path_length};
use crate::tree::Node;
use crate::{Contamination, Error, IsolationForest, MaxSamples, Params, TreeRef, depth_limit};

/// The model format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"VGIF";
/// Magic + version: enough to tell "not a model" from "another version".
const PREFIX_LEN: usize = 6;

pub(crate) fn encode(f: &IsolationForest) -> Vec<u8> {
    // ~2 bytes per leaf + 9 per internal node; roughly half the nodes are leaves.
    let mut out = Vec::with_capacity(96 + f.nodes.len() * 6);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(f.n_features as u32).to_le_bytes());
    out.extend_from_slice(&(f.trees.len() as u32).to_le_bytes());
    out.extend_from_slice(&(f.psi as u64).to_le_bytes());
    let p = &f.params;
    match p.max_samples {
        MaxSamples::Auto => {
            out.push(0);
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        MaxSamples::Count(c) => {
            out.push(1);
            out.extend_from_slice(&(c as u64).to_le_bytes());
        }
        MaxSamples::Fraction(x) => {
            out.push(2);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.extend_from_slice(&p.max_features.to_le_bytes());
    out.push(u8::from(p.bootstrap));
    match p.contamination {
        Contamination::Auto => {
            out.push(0);
            out.extend_from_slice(&0f64.to_le_bytes());
        }
        Contamination::Fraction(c) => {
            out.push(1);
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    out.extend_from_slice(&p.seed.to_le_bytes());
    out.extend_from_slice(&f.offset.to_le_bytes());
    out.extend_from_slice(&(f.nodes.len() as u32).to_le_bytes());
    // Nodes are stored in preorder already, so writing them in array order is a preorder walk.
    for (i, n) in f.nodes.iter().enumerate() {
        if n.children[0] as usize == i {
            out.push(0);
            put_varint(&mut out, u64::from(f.sizes[i]));
        } else {
            put_varint(&mut out, u64::from(n.feature) + 1);
            out.extend_from_slice(&n.threshold.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

/// A decoding failure inside the hot loops: a static message only, so results stay two words
/// wide (returning the full `Error` through every node call measurably slowed loading).
#[derive(Debug, Clone, Copy)]
struct Bad(&'static str);

impl From<Bad> for Error {
    fn from(b: Bad) -> Error {
        Error::Corrupt(b.0.to_string())
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Bad("truncated")),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Bad> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, Bad> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    fn varint(&mut self) -> Result<u64, Bad> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Bad("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Bad("varint longer than 10 bytes"))
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<IsolationForest, Error> {
    if bytes.len() < PREFIX_LEN || &bytes[..4] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if bytes.len() < PREFIX_LEN + 4 {
        return Err(corrupt("truncated"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut r = Reader {
        buf: body,
        pos: PREFIX_LEN,
    };

    let n_features = r.u32()? as usize;
    let n_trees = r.u32()? as usize;
    let psi = r.u64()?;
    if n_features == 0 || n_trees == 0 || psi == 0 || psi > u64::from(u32::MAX) {
        return Err(corrupt("n_features, n_trees and psi must be in range"));
    }
    let psi = psi as usize;
    let max_samples = match (r.u8()?, r.array::<8>()?) {
        (0, _) => MaxSamples::Auto,
        (1, b) => MaxSamples::Count(
            usize::try_from(u64::from_le_bytes(b)).map_err(|_| corrupt("max_samples"))?,
        ),
        (2, b) => MaxSamples::Fraction(f64::from_le_bytes(b)),
        (t, _) => return Err(corrupt(format!("unknown max_samples tag {t}"))),
    };
    let max_features = r.f64()?;
    let bootstrap = match r.u8()? {
        0 => false,
        1 => true,
        b => return Err(corrupt(format!("bootstrap flag {b}"))),
    };
    let contamination = match (r.u8()?, r.f64()?) {
        (0, _) => Contamination::Auto,
        (1, c) if c > 0.0 && c <= 0.5 => Contamination::Fraction(c),
        (t, c) => return Err(corrupt(format!("contamination tag {t} value {c}"))),
    };
    let seed = r.u64()?;
    let offset = r.f64()?;
    if !offset.is_finite() {
        return Err(corrupt("offset is not finite"));
    }
    let total_nodes = r.u32()? as usize;
    let max_per_tree = 2 * psi - 1;
    if total_nodes < n_trees
        || n_trees
            .checked_mul(max_per_tree)
            .is_none_or(|m| total_nodes > m)
    {
        return Err(corrupt("node count inconsistent with n_trees and psi"));
    }
    // Each node takes at least 2 bytes, so a short buffer cannot claim a huge allocation.
    if total_nodes > body.len() / 2 {
        return Err(corrupt("node count exceeds the data"));
    }

    let mut nodes = Vec::with_capacity(total_nodes);
    let mut sizes = Vec::with_capacity(total_nodes);
    let mut trees = Vec::with_capacity(n_trees);
    let limit = depth_limit(psi);
    let c_table = PathLengthTable::new(psi as u64);
    for _ in 0..n_trees {
        let root = nodes.len() as u32;
        let mut t = TreeDecoder {
            r: &mut r,
            nodes: &mut nodes,
            sizes: &mut sizes,
            n_features,
            limit,
            c: &c_table,
            node_budget: total_nodes,
            depth: 0,
        };
        let size = t.node(0)?;
        let depth = t.depth;
        if size as usize != psi {
            return Err(corrupt(format!(
                "a tree's leaves hold {size} rows, expected {psi}"
            )));
        }
        trees.push(TreeRef { root, depth });
    }
    if nodes.len() != total_nodes {
        return Err(corrupt("node count does not match the header"));
    }
    if r.pos != body.len() {
        return Err(corrupt("trailing bytes after the last tree"));
    }

    let params = Params {
        n_estimators: n_trees,
        max_samples,
        max_features,
        bootstrap,
        contamination,
        seed,
    };
    let denominator = n_trees as f64 * average_path_length(psi as u64);
    Ok(IsolationForest {
        params,
        n_features,
        psi,
        offset,
        trees,
        nodes,
        sizes,
        denominator,
    })
}

struct TreeDecoder<'r, 'a> {
    r: &'r mut Reader<'a>,
    nodes: &'r mut Vec<Node>,
    sizes: &'r mut Vec<u32>,
    n_features: usize,
    limit: u32,
    c: &'r PathLengthTable,
    node_budget: usize,
    depth: u32,
}

impl TreeDecoder<'_, '_> {
    /// Decodes the subtree at `depth`, returning its sample count. Recursion is bounded by the
    /// depth limit (≤ 32 for ψ < 2^32), checked before descending.
    fn node(&mut self, depth: u32) -> Result<u32, Bad> {
        if self.nodes.len() >= self.node_budget {
            return Err(Bad("more nodes than the header declares"));
        }
        let id = self.nodes.len() as u32;
        let tag = self.r.varint()?;
        if tag == 0 {
            let size = self.r.varint()?;
            if size == 0 || size > u64::from(u32::MAX) {
                return Err(Bad("leaf size out of range"));
            }
            self.nodes.push(Node {
                threshold: f64::from(depth) + self.c.get(size),
                feature: 0,
                children: [id, id],
            });
            self.sizes.push(size as u32);
            self.depth = self.depth.max(depth);
            return Ok(size as u32);
        }
        let feature = tag - 1;
        if feature >= self.n_features as u64 {
            return Err(Bad("feature out of range"));
        }
        let threshold = self.r.f64()?;
        if !threshold.is_finite() {
            return Err(Bad("non-finite threshold"));
        }
        if depth >= self.limit {
            return Err(Bad("tree deeper than its depth limit"));
        }
        self.nodes.push(Node {
            threshold,
            feature: feature as u32,
            children: [id, id],
        });
        self.sizes.push(0);
        let left = self.nodes.len() as u32;
        let left_size = self.node(depth + 1)?;
        let right = self.nodes.len() as u32;
        let right_size = self.node(depth + 1)?;
        let size = left_size
            .checked_add(right_size)
            .ok_or(Bad("node size overflows"))?;
        self.nodes[id as usize].children = [left, right];
        self.sizes[id as usize] = size;
        Ok(size)
    }
}
