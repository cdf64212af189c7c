//! listen (being written).
