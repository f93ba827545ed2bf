//! Calling a PHP function by name from Rust.
//!
//! Why not ext-php-rs's `Function::try_from_function(name)?.try_call(..)`:
//! it returns the `zend_function` by value, copying the whole union (the
//! size of a user function's op array) out of an internal function's
//! smaller allocation (`malloc(sizeof(zend_internal_function))` in
//! `zend_register_functions`). That reads past the end of a heap block on
//! every call; valgrind reports it as "Invalid read of size 8 ... 0 bytes
//! after a block of size 136 alloc'd" (php/tests/leak_test.php). Here the
//! function is called in place, through the pointer PHP's table holds.

use std::ptr;

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::ffi::{zend_call_known_function, zend_fetch_function_str};
use ext_php_rs::types::Zval;

use crate::errors::{Error, Result};

/// Calls PHP's function `name` with `args` and returns its return value.
/// A pending exception is left for the caller to look at.
pub fn call(name: &str, args: &[&dyn IntoZvalDyn]) -> Result<Zval> {
    // SAFETY: `name` is a valid pointer and length; PHP looks it up without
    // keeping the pointer. The result points into the function table, which
    // lives as long as the process's module registrations.
    let func = unsafe { zend_fetch_function_str(name.as_ptr().cast(), name.len()) };
    if func.is_null() {
        return Err(Error::internal(format!("PHP function {name}() is missing")));
    }
    let mut params = args
        .iter()
        .map(|a| a.as_zval(false))
        .collect::<ext_php_rs::error::Result<Vec<Zval>>>()
        .map_err(|e| Error::internal(format!("{name}(): an argument cannot be passed: {e}")))?;
    let count = u32::try_from(params.len())
        .map_err(|_| Error::internal(format!("{name}(): too many arguments")))?;
    let mut ret = Zval::new();
    // SAFETY: `func` is a live function of the table; `params` holds `count`
    // initialised zvals (each with its own reference, released when `params`
    // drops); `ret` is an initialised zval PHP writes the result into.
    unsafe {
        zend_call_known_function(
            func,
            ptr::null_mut(),
            ptr::null_mut(),
            &raw mut ret,
            count,
            params.as_mut_ptr(),
            ptr::null_mut(),
        );
    }
    Ok(ret)
}
