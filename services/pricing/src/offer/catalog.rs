//! What is kept from `products` for pricing `terms`, compactly.
//!
//! A region's file has on the order of 10⁵ products and the whole EC2 file
//! about 10⁶, so per-product cost is what bounds memory:
//!
//! * a kept product is its SKU (inline, 16 bytes) mapped to a small index
//!   into a table of interned-string ids (7 × `u32` for an instance);
//!   the strings themselves (instance types, operating systems, dates…)
//!   are interned once as `Arc<str>`, so emitting a price clones pointers;
//! * a skipped product is only a 64-bit fingerprint of its SKU, so that a
//!   SKU under `terms` with no product at all can still be reported. (An
//!   unknown SKU whose fingerprint collides with a skipped one's — odds
//!   ~n/2⁶⁴ — is treated as skipped; kept SKUs are matched exactly.)

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::entries::checked_text;
use super::{EbsKind, InstanceKey};

/// Interned strings, ids from 0.
///
/// Most strings interned while pricing repeat what was just seen (the same
/// dates, lease classes, operating systems…), so a small ring of recent
/// strings is compared byte-wise before hashing; bytes are checked to be
/// UTF-8 only when they are new to the ring.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, u32>,
    strings: Vec<Arc<str>>,
    recent: Vec<(Arc<str>, u32)>,
    next_recent: usize,
}

const RECENT: usize = 16;

impl Interner {
    /// The id of `bytes`; `None` if they are not valid text.
    pub fn intern(&mut self, bytes: &[u8]) -> Option<u32> {
        if let Some((_, id)) = self.recent.iter().find(|(s, _)| s.as_bytes() == bytes) {
            return Some(*id);
        }
        let text = checked_text(bytes)?;
        let id = self.intern_str(text);
        let entry = (self.get(id), id);
        if self.recent.len() < RECENT {
            self.recent.push(entry);
        } else {
            self.recent[self.next_recent] = entry;
            self.next_recent = (self.next_recent + 1) % RECENT;
        }
        Some(id)
    }

    /// The id of `s`.
    pub fn intern_str(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let arc: Arc<str> = Arc::from(s);
        self.strings.push(arc.clone());
        self.ids.insert(arc, id);
        id
    }

    pub fn get(&self, id: u32) -> Arc<str> {
        self.strings
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// The shared copy of `bytes`; `None` if they are not valid text.
    pub fn intern_arc(&mut self, bytes: &[u8]) -> Option<Arc<str>> {
        self.intern(bytes).map(|id| self.get(id))
    }
}

/// A kept instance product: ids of its key's strings.
#[derive(Clone, Copy)]
pub(crate) struct InstanceIds {
    pub region: u32,
    pub instance_type: u32,
    pub operating_system: u32,
    pub tenancy: u32,
    pub license_model: u32,
    pub pre_installed_sw: u32,
    pub operation: u32,
}

/// A kept EBS product.
#[derive(Clone, Copy)]
pub(crate) struct EbsIds {
    pub region: u32,
    pub volume_api_name: u32,
    pub usage_type: u32,
    pub kind: EbsKind,
}

/// What a SKU under `terms` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    Unknown,
    Skipped,
    Instance(u32),
    Ebs(u32),
}

/// A SKU of up to 16 bytes (all AWS SKUs are 16), stored inline.
type ShortSku = [u8; 16];

fn short_sku(sku: &str) -> Option<ShortSku> {
    let b = sku.as_bytes();
    if b.len() > 16 || b.contains(&0) {
        return None;
    }
    let mut out = [0u8; 16];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// A fast hasher for SKUs: one multiply per 8 bytes, then a MurmurHash3
/// finalizer so every output bit depends on every input bit (the map uses
/// the high bits as tags and the low bits as bucket indexes, and the
/// skipped set uses the whole value as a fingerprint). SipHash's defence
/// against chosen-key flooding is not needed for AWS-published SKUs and
/// cost ~5% of the parse.
#[derive(Default)]
pub(crate) struct SkuHasher(u64);

impl Hasher for SkuHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type FastSku = BuildHasherDefault<SkuHasher>;

/// A 64-bit fingerprint of a SKU, for the skipped set.
fn fingerprint(sku: &str) -> u64 {
    let mut h = SkuHasher::default();
    h.write(sku.as_bytes());
    h.write_usize(sku.len());
    h.finish()
}

/// A hasher for keys that already are uniform 64-bit hashes.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Clone, Copy)]
enum Kept {
    Instance(u32),
    Ebs(u32),
}

#[derive(Default)]
pub(crate) struct Catalog {
    pub strings: Interner,
    short: HashMap<ShortSku, Kept, FastSku>,
    long: HashMap<Box<str>, Kept>,
    skipped: HashSet<u64, BuildHasherDefault<Prehashed>>,
    instances: Vec<InstanceIds>,
    ebs: Vec<EbsIds>,
}

impl Catalog {
    fn insert(&mut self, sku: &str, kept: Kept) -> bool {
        match short_sku(sku) {
            Some(k) => self.short.insert(k, kept).is_none(),
            None => self.long.insert(sku.into(), kept).is_none(),
        }
    }

    /// Records a kept instance product; `false` if the SKU was already kept.
    pub fn add_instance(&mut self, sku: &str, ids: InstanceIds) -> bool {
        let idx = u32::try_from(self.instances.len()).unwrap_or(u32::MAX);
        self.instances.push(ids);
        self.insert(sku, Kept::Instance(idx))
    }

    /// Records a kept EBS product; `false` if the SKU was already kept.
    pub fn add_ebs(&mut self, sku: &str, ids: EbsIds) -> bool {
        let idx = u32::try_from(self.ebs.len()).unwrap_or(u32::MAX);
        self.ebs.push(ids);
        self.insert(sku, Kept::Ebs(idx))
    }

    pub fn add_skipped(&mut self, sku: &str) {
        self.skipped.insert(fingerprint(sku));
    }

    pub fn lookup(&self, sku: &str) -> Known {
        let kept = match short_sku(sku) {
            Some(k) => self.short.get(&k),
            None => self.long.get(sku),
        };
        match kept {
            Some(Kept::Instance(i)) => Known::Instance(*i),
            Some(Kept::Ebs(i)) => Known::Ebs(*i),
            None if self.skipped.contains(&fingerprint(sku)) => Known::Skipped,
            None => Known::Unknown,
        }
    }

    pub fn instance_key(&self, idx: u32) -> InstanceKey {
        let ids = self.instances[idx as usize];
        let s = |id| self.strings.get(id);
        InstanceKey {
            region: s(ids.region),
            instance_type: s(ids.instance_type),
            operating_system: s(ids.operating_system),
            tenancy: s(ids.tenancy),
            license_model: s(ids.license_model),
            pre_installed_sw: s(ids.pre_installed_sw),
            operation: s(ids.operation),
        }
    }

    pub fn ebs(&self, idx: u32) -> EbsIds {
        self.ebs[idx as usize]
    }
}
