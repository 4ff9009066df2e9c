//! Thin napi-rs binding over `memory-core`: conversions, promises and `AsyncTask`s only.
//!
//! | module | what |
//! | --- | --- |
//! | `types` | the JavaScript objects taken and returned |
//! | `convert` | conversions between them and the core's types |
//! | `store` | the `MemoryStore` class |
//! | `embed` | the `hash` embedder and text windows |
//! | `model` | ONNX embedding models: `ModelTokenizer`, `meanPool` |
//! | `completion` | promises settled by the store's threads |
//! | `factory` | results built by JavaScript factories |
//! | `bench` | benchmark baselines (feature `bench` only) |
//!
//! Errors reach JavaScript as `Error`s whose message starts with `[code] ` (a stable machine
//! code such as `invalid_request`, `not_found`, `storage_full`, `corrupt`, `locked`);
//! `ts/native.ts` turns that prefix into the error's `code` property.

#![deny(clippy::all)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// mimalloc for the core's allocations (the addon's own heap; Node's is untouched): replaying
/// 1M records at open allocates ~5M small objects, which took ~15% less time than with glibc's
/// malloc, and so did a 1,000-item batch store. The local-dynamic TLS model keeps it loadable
/// through `dlopen` next to other addons. Built with `no_thp`: mimalloc otherwise advises its
/// 1 GiB arenas `MADV_HUGEPAGE`, and on the benchmarks' VM fresh 2 MB pages fault in at
/// ~350 MB/s against ~2 GB/s for 4 KB pages, so a fresh process's open of 1M memories (~1 GB of
/// new heap, 278 of 318 MB on huge pages at 200k) spent seconds faulting; `MIMALLOC_ALLOW_THP=0`
/// took a 200k open → first query from 9.6–16.6 s to 1.1–7.5 s on a machine at load 12.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Modules with `#[napi]` items are public: napi-rs registers them, nothing in Rust calls them.
#[cfg(feature = "bench")]
pub mod bench;
mod budget;
mod completion;
mod convert;
pub mod embed;
mod factory;
pub mod model;
pub mod store;
pub mod types;

use memory_core::store as core_store;
use napi::bindgen_prelude::*;
use napi_derive::napi;

pub use types::*;

fn to_napi(e: memory_core::Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {}", e.code().as_str(), e))
}

fn invalid(msg: impl Into<String>) -> napi::Error {
    napi::Error::new(Status::InvalidArg, format!("[invalid_request] {}", msg.into()))
}

/// Hands an operation to the store now — on the JS thread, so operations reach the writer in
/// the order JS issued them (pipelined stores of one connection land in the log in request
/// order) — and returns its promise, settled through [`completion`].
fn submit<'env, U: Send + 'static, T: ToNapiValue>(
    env: &'env Env,
    start: impl FnOnce(core_store::Done<U>),
    map: impl FnOnce(U) -> napi::Result<T> + Send + 'static,
) -> napi::Result<PromiseRaw<'env, T>> {
    completion::promise(env, to_napi, start, map)
}

// ---------- limits and names shared with TypeScript (test/constants.test.ts checks them) ----------

/// UTF-8 bytes of a memory's text.
#[napi]
pub const MAX_TEXT_BYTES: u32 = core_store::MAX_TEXT_BYTES as u32;
/// UTF-8 bytes of a memory's metadata as JSON text.
#[napi]
pub const MAX_METADATA_BYTES: u32 = core_store::MAX_METADATA_BYTES as u32;
/// Characters of a memory id.
#[napi]
pub const MAX_ID_CHARS: u32 = core_store::MAX_ID_CHARS as u32;
/// Characters of a namespace name.
#[napi]
pub const MAX_NAMESPACE_CHARS: u32 = core_store::MAX_NAMESPACE_CHARS as u32;
/// Dimensions of the built-in `hash` embedder.
#[napi]
pub const HASH_DIMS: u32 = memory_core::embed::HASH_DIMS as u32;
/// The built-in `hash` embedder's name.
#[napi]
pub const HASH_EMBEDDER_NAME: &str = memory_core::embed::HASH_NAME;
/// Filter objects a filter may nest through `$and` / `$or` / `$not`.
#[napi]
pub const MAX_FILTER_DEPTH: u32 = memory_core::filter::MAX_FILTER_DEPTH as u32;

/// Every operator of the filter language: the logical ones, then the field ones.
#[napi]
pub fn filter_operators() -> Vec<&'static str> {
    use memory_core::filter::{FIELD_OPERATORS, LOGICAL_OPERATORS};
    LOGICAL_OPERATORS.iter().chain(FIELD_OPERATORS.iter()).copied().collect()
}

/// Salvage every intact record of a damaged log and rebuild an unreadable `store.json`;
/// the damaged bytes are kept aside (stopped store only).
#[napi]
pub fn repair(dir: String) -> napi::Result<RepairResult> {
    core_store::repair(std::path::Path::new(&dir)).map(RepairResult::from).map_err(to_napi)
}

/// A data directory's lock, held from JavaScript while a directory's files are switched
/// around with no store open (a re-embedding's switch, or finishing one at start):
/// `acquire` fails with `[locked]` while a store of any process has the directory open.
#[napi]
pub struct DataDirLock {
    held: Option<core_store::DirLock>,
}

#[napi]
impl DataDirLock {
    /// Locks `dir` (which must exist).
    #[napi(factory)]
    pub fn acquire(dir: String) -> napi::Result<Self> {
        let held = core_store::lock_dir(std::path::Path::new(&dir), "").map_err(to_napi)?;
        Ok(DataDirLock { held: Some(held) })
    }

    /// Unlocks (idempotent); dropping the object unlocks too.
    #[napi]
    pub fn release(&mut self) {
        self.held = None;
    }
}

/// Register `(id, seq, significance, timestamp, associations, existing, namespaceTotal) =>
/// PutResult` as this thread's put-result factory: put results are then built in JavaScript,
/// several times cheaper than a native object conversion (see `factory.rs`).
#[napi(ts_args_type = "factory: (id: string, seq: number, significance: number, timestamp: number, associations: string[], existing: boolean, namespaceTotal: number) => PutResult")]
pub fn set_put_result_factory(env: Env, factory: Unknown) -> napi::Result<()> {
    if factory.get_type()? != ValueType::Function {
        return Err(invalid("the put-result factory must be a function"));
    }
    factory::register(factory::Kind::PutResult, env.raw(), factory.raw())
}

/// Register `(id, namespace, text, metadata, significance, timestamp, associations, seq,
/// expiresAt, embedding, score) => Memory` as this thread's memory factory (the last three
/// `undefined` when absent): memories returned by reads are then built in JavaScript.
#[napi(ts_args_type = "factory: (id: string, namespace: string, text: string, metadata: string, significance: number, timestamp: number, associations: string[], seq: number, expiresAt: number | undefined, embedding: Float32Array | undefined, score: number | undefined) => Memory")]
pub fn set_memory_factory(env: Env, factory: Unknown) -> napi::Result<()> {
    if factory.get_type()? != ValueType::Function {
        return Err(invalid("the memory factory must be a function"));
    }
    factory::register(factory::Kind::Memory, env.raw(), factory.raw())
}

/// Which SIMD kernels are in use and which this CPU supports.
#[napi]
pub fn kernel_info() -> KernelInfo {
    use memory_core::search::{available_isas, kernels, q8};
    KernelInfo {
        isa: kernels().isa.name().to_string(),
        available: available_isas().into_iter().map(|i| i.name().to_string()).collect(),
        int8: q8::kernel().is_some(),
        int8_kernel: q8::kernel_name().to_string(),
        prefetch: kernels().prefetch,
    }
}
