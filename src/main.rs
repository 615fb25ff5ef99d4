//! The `ferry` binary: parse the command line, run, turn the outcome into an
//! exit status. Everything else is in the library and in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_buffers_in_the_heap();
    raise_the_open_file_limit();
    cli::main()
}

/// A server holds a descriptor per connection and a bounded few per
/// transfer; the soft limit many systems start processes with (1024) is far
/// below what they allow (the hard limit), so take what is allowed, as
/// nginx and Go programs do. Failure leaves the limit as it was.
fn raise_the_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

/// A transfer frees a buffer of a few hundred KiB every chunk. glibc hands
/// blocks that large back to the kernel on free, so each new chunk costs
/// fresh pages, each faulted in and zeroed (bench/RESULTS.md counts them).
/// Keeping them in the heap lets the next chunk reuse the same memory.
/// The trim threshold bounds what an idle process keeps.
fn keep_freed_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
