//! End-to-end tests: a real crius daemon on a real socket. (Filled by the e2e helper.)
