//! Examples live in the `examples` target of this package.
