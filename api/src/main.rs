//! `lro-api`: the command line is [`lro_api::cli`]; only the allocator is the binary's own.

// mimalloc: under glibc's malloc the runtime's threads queue on arena locks when one frees what
// another allocated (a GET: +50 % requests/s with mimalloc, interleaved A/B in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    lro_api::cli::main();
}
