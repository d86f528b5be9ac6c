//! `struct page` / `struct folio` as the running kernel lays them out, read from its BTF.
//!
//! The fields gup-trace reads moved in nearly every release: 6.1 keeps the large-folio pin
//! count and order in the first tail page's `compound_pincount` / `compound_order`; 6.3+ name
//! them in `struct folio` (`_pincount`, `_folio_order`, later the low byte of `_flags_1`). The
//! grab functions changed signature under the same name. So every offset and every rule here
//! comes from BTF; nothing is keyed on the version number.

use btf_rs::{Btf, Type};
use gup_trace_common::{FolioLayout, Hook, grab_rule};

/// Why the per-folio hooks cannot run on this kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

pub(super) fn missing(what: &str) -> LayoutError {
    LayoutError(format!("kernel BTF lacks {what}"))
}

/// The struct of that name with members (BTF also holds empty forward declarations).
pub(super) fn find_struct(btf: &Btf, name: &str) -> Option<btf_rs::Struct> {
    btf.resolve_types_by_name(name)
        .ok()?
        .into_iter()
        .find_map(|ty| match ty {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
}

/// Follows typedefs and qualifiers to the type underneath.
fn underlying(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..16 {
        ty = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(t).ok()?
            }
            Type::TypeTag(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        };
    }
    None
}

/// Byte offset of member `name` in `st`, searching through anonymous structs and unions (where
/// struct page keeps almost everything).
pub(super) fn member_offset(btf: &Btf, st: &btf_rs::Struct, name: &str) -> Option<u32> {
    for member in &st.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Some(member.bit_offset() / 8);
        }
        if member_name.is_empty() {
            let inner = btf
                .resolve_chained_type(member)
                .ok()
                .and_then(|t| underlying(btf, t));
            if let Some(Type::Struct(inner) | Type::Union(inner)) = inner
                && let Some(offset) = member_offset(btf, &inner, name)
            {
                return Some(member.bit_offset() / 8 + offset);
            }
        }
    }
    None
}

fn enum_value(btf: &Btf, enum_name: &str, constant: &str) -> Option<u32> {
    btf.resolve_types_by_name(enum_name)
        .ok()?
        .into_iter()
        .find_map(|ty| match ty {
            Type::Enum(e) => e
                .members
                .iter()
                .find_map(|m| (btf.resolve_name(m).ok()? == constant).then(|| m.val())),
            _ => None,
        })
}

/// How `function` says it took its references, from its BTF return type; None when the
/// kernel has no such function.
fn grab_rule_of(btf: &Btf, function: &str) -> Option<u32> {
    let func = btf
        .resolve_types_by_name(function)
        .ok()?
        .into_iter()
        .find_map(|ty| match ty {
            Type::Func(f) => Some(f),
            _ => None,
        })?;
    let Type::FuncProto(proto) = btf.resolve_chained_type(&func).ok()? else {
        return None;
    };
    let ret = match proto.return_type_id() {
        0 => Type::Void,
        id => underlying(btf, btf.resolve_type_by_id(id).ok()?)?,
    };
    Some(match ret {
        Type::Void => grab_rule::VOID,
        Type::Ptr(_) => grab_rule::POINTER,
        Type::Int(i) if i.is_bool() => grab_rule::BOOL,
        _ => grab_rule::STATUS,
    })
}

/// Kernel variables the programs read (addresses from /proc/kallsyms).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelVariables {
    pub vmemmap_base: Option<u64>,
    pub zero_pfn: Option<u64>,
}

/// x86-64's struct page array start without KASLR (`VMEMMAP_START`), used only when the
/// kernel has no `vmemmap_base` variable (CONFIG_DYNAMIC_MEMORY_LAYOUT off). BTF cannot hold
/// a macro, hence the table value.
const X86_64_VMEMMAP_START: u64 = 0xffff_ea00_0000_0000;

/// Reads the layout; an error names what BTF lacks.
pub fn read(btf: &Btf, vars: KernelVariables) -> Result<FolioLayout, LayoutError> {
    let page = find_struct(btf, "page").ok_or_else(|| missing("struct page"))?;
    let folio = find_struct(btf, "folio").ok_or_else(|| missing("struct folio"))?;
    let page_struct_size = page.size() as u32;
    let field = |st: &btf_rs::Struct, name: &str, what: &str| {
        member_offset(btf, st, name).ok_or_else(|| missing(what))
    };
    let flags_offset = field(&page, "flags", "page.flags")?;
    // 7.0 renamed compound_head to compound_info (and may store a mask in it, see the kernel
    // side's folio_of()).
    let compound_head_offset = member_offset(btf, &page, "compound_head")
        .or_else(|| member_offset(btf, &page, "compound_info"))
        .ok_or_else(|| missing("page.compound_head (or compound_info)"))?;
    let refcount_offset = field(&page, "_refcount", "page._refcount")?;
    // Where the large-folio pin count and order live: named in struct folio since 6.3, in the
    // first tail page's compound_* fields before.
    let pincount_offset = match member_offset(btf, &folio, "_pincount") {
        Some(offset) => offset,
        None => page_struct_size + field(&page, "compound_pincount", "folio._pincount")?,
    };
    let order_offset = if let Some(offset) = member_offset(btf, &folio, "_folio_order") {
        offset
    } else if let Some(offset) = member_offset(btf, &folio, "_flags_1") {
        // folio_order(): the low byte of _flags_1 (little-endian: its first byte).
        offset
    } else {
        page_struct_size + field(&page, "compound_order", "folio._folio_order")?
    };
    let head_bit =
        enum_value(btf, "pageflags", "PG_head").ok_or_else(|| missing("enum pageflags PG_head"))?;
    let mut grab_rules = 0;
    for &hook in Hook::ALL
        .iter()
        .filter(|h| h.class() == gup_trace_common::HookClass::Grab)
    {
        let rule = grab_rule_of(btf, hook.name()).unwrap_or(grab_rule::VOID);
        grab_rules = grab_rule::with(grab_rules, hook, rule);
    }
    Ok(FolioLayout {
        vmemmap_base_addr: vars.vmemmap_base.unwrap_or(0),
        vmemmap_start: X86_64_VMEMMAP_START,
        zero_pfn_addr: vars.zero_pfn.unwrap_or(0),
        page_size: page_size() as u32,
        page_struct_size,
        flags_offset,
        compound_head_offset,
        refcount_offset,
        pincount_offset,
        order_offset,
        head_bit,
        grab_rules,
        valid: 1,
    })
}

/// The layout the programs get when it could not be read: they then read no folio, but still
/// need the page size, which does not come from BTF.
pub fn unread_layout() -> FolioLayout {
    FolioLayout::unread(page_size() as u32)
}

/// This system's page size in bytes. `sysconf` cannot fail for it on Linux (the kernel hands
/// it to every process in the aux vector); should it ever, x86-64's.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a layout the programs still locate mmap_lock drops by the page size: the
    /// fallback must carry the real one, never 0.
    #[test]
    fn the_unread_layout_carries_the_page_size() {
        let layout = unread_layout();
        assert_eq!(layout.page_size as usize, page_size());
        assert_ne!(layout.page_size, 0);
        assert_eq!(layout.valid, 0, "an unread layout reads no folio");
    }

    /// This machine's kernel BTF: the host kernel cannot run the hooks, but its layout can be
    /// read, and the values every x86-64 kernel since 6.1 shares must come out.
    #[test]
    fn reads_the_running_kernels_layout() {
        let Ok(btf) = Btf::from_file("/sys/kernel/btf/vmlinux") else {
            panic!("this test needs /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF)");
        };
        let layout = read(&btf, KernelVariables::default()).unwrap();
        assert_eq!(
            layout.page_struct_size, 64,
            "struct page is 64 bytes on x86-64"
        );
        assert_eq!(layout.flags_offset, 0);
        assert_eq!(layout.compound_head_offset, 8);
        assert_eq!(layout.refcount_offset, 52);
        assert!(
            layout.pincount_offset >= 64 && layout.pincount_offset < 128,
            "the pin count lives in the first tail page: {}",
            layout.pincount_offset
        );
        assert!(layout.order_offset >= 64 && layout.order_offset < 128);
        assert_eq!(
            grab_rule::of(layout.grab_rules, Hook::TryGrabFolioFast),
            grab_rule::POINTER,
            "try_grab_folio_fast returns the folio"
        );
        assert_eq!(
            grab_rule::of(layout.grab_rules, Hook::TryGrabFolio),
            grab_rule::STATUS,
            "try_grab_folio returns 0 or an errno since 6.10"
        );
    }
}
