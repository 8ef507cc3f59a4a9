//! `sysconf`, to turn the tick and page counts of `/proc/self/stat` into
//! seconds and bytes for the `process_*` metrics. A value the system does
//! not know falls back to Linux's usual one; `errno` is not read.

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc/self/stat`.
#[must_use]
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; any name is allowed
    // and an unknown one returns -1, which we replace by Linux's 100.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `sysconf(_SC_PAGESIZE)`: the unit of the resident size in `/proc/self/stat`.
#[must_use]
pub(crate) fn page_size() -> u64 {
    // SAFETY: as above; -1 falls back to the common 4 KiB page.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `key` in the auxiliary vector the kernel gave this process.
    fn auxv(key: libc::c_ulong) -> u64 {
        let bytes = std::fs::read("/proc/self/auxv").unwrap();
        let word = size_of::<libc::c_ulong>();
        let words: Vec<u64> = bytes
            .chunks_exact(word)
            .map(|chunk| libc::c_ulong::from_ne_bytes(chunk.try_into().unwrap()))
            .collect();
        words
            .chunks_exact(2)
            .find(|pair| pair[0] == key)
            .map(|pair| pair[1])
            .unwrap_or_else(|| panic!("no {key} in /proc/self/auxv"))
    }

    #[test]
    fn clock_ticks_and_page_size_are_the_kernels() {
        assert_eq!(clock_ticks_per_second(), auxv(libc::AT_CLKTCK));
        assert_eq!(page_size(), auxv(libc::AT_PAGESZ));
    }
}
