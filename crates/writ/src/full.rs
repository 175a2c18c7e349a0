// The allocator: every decision builds and drops many small values (Cedar's
// request and context, JSON, the leaf); mimalloc's thread-local free lists
// cost less per allocation than glibc's arenas (BENCHMARKS.md, issue 2).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Every command of the library, and `writ bench` (crates/writ-bench).
    writ_cli::main::<writ_bench::Bench>()
}
