"""Crash-consistency checking in the spirit of ALICE (Pillai et al., OSDI 2014).

Killing a process keeps everything it wrote in the page cache, so kill tests never see what
a power cut does to a file system: writes not yet fsynced are lost, and a rename or a file
creation not followed by an fsync of its folder may be undone. This package turns a
recorded run into the crash states a POSIX file system may leave:

* `trace` runs a command under strace and turns the system calls on files under one folder
  into a logical sequence of operations (create, write, truncate, rename, link, unlink,
  mkdir, fsync of a file or a folder), each with its data;
* `replay` decides, for a crash after the first k operations, which of them are durable
  (persisted by a later fsync that started after they completed) and builds the states
  in which the others are dropped, undone or cut short, then writes one into a folder.

The test that uses it (tests/e2e/test_crash_consistency.py) runs bantzd's recovery on every
state and checks the promises of SPEC section 4.
"""
