// The allocator: every decision builds and drops many small values (Cedar's
// request and context, JSON, the leaf); mimalloc's thread-local free lists
// cost less per allocation than glibc's arenas (BENCHMARKS.md, issue 2).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    writ_cli::main()
}
