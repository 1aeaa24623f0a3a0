//! Raising the soft limit on open descriptors, for a test with hundreds of
//! connections: shared by the integration tests (`common`) and the
//! library's own tests (`server::core::test_support`, which includes this
//! file by path).

/// Raises this process's soft limit on open descriptors to `want` (at most
/// the hard limit; a higher one stays as it is); a server started from the
/// process inherits it.
pub(crate) fn raise_descriptor_limit(want: usize) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = want as u64;
    if limit.current.is_some_and(|soft| soft < want) {
        let current = Some(limit.maximum.map_or(want, |hard| hard.min(want)));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current,
                maximum: limit.maximum,
            },
        );
    }
}
