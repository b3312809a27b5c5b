// Package difftest proves a union filesystem against kernel overlayfs by
// running the same random operations on both and comparing what they show.
//
// The pieces, in the order a run uses them:
//
//   - Layout builds identical lower layers (hard links, symlinks, an opaque
//     dir, whiteouts) in a fresh directory, so every run starts from the same
//     bytes on disk.
//   - Backend mounts a Stack (lowers, upper, work, mountpoint): Kernel is the
//     oracle, Strata runs the real binary.
//   - Generator draws the next Op from a seeded rng and the current state of
//     the oracle's merged tree, so most operations hit real entries and the
//     rest probe error paths.
//   - Apply runs one Op on a mount and returns its errno; the errno on both
//     mounts must match, op by op.
//   - Snapshot reads a tree (merged view or upper dir) into comparable
//     entries; Diff names every difference.
//   - Shrink reduces a failing op list by delta debugging, replaying each
//     candidate on fresh copies of the lowers, to the shortest list that
//     still makes the two disagree.
//
// Nothing is mocked: every mount is a real kernel overlay or a real FUSE
// server, and the test decides who is right by asking the kernel.
package difftest
