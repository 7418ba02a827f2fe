#![allow(unsafe_code)]
//! temporary
use crate::png::fast::bitwriter::BitWriter;
use crate::png::fast::huffman::{CostTable, Table};
use super::scalar;
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel(());
impl Kernel {
    pub fn new() -> Option<Self> { None }
    pub fn filter_costs(&self, raw: &[u8], prev: &[u8], bpp: usize, cost: &CostTable) -> [u64; 5] { scalar::filter_costs(raw, prev, bpp, cost) }
    pub fn filter_row(&self, f: u8, raw: &[u8], prev: &[u8], bpp: usize, dst: &mut [u8]) { scalar::filter_row(f, raw, prev, bpp, dst) }
    pub fn find_run(&self, seg: &[u8], from: usize) -> Option<usize> { scalar::find_run(seg, from) }
    pub fn zero_run(&self, seg: &[u8], s: usize) -> usize { scalar::zero_run(seg, s) }
    pub fn emit_literals(&self, bytes: &[u8], table: &Table, bw: &mut BitWriter<'_>) { scalar::emit_literals(bytes, table, bw) }
}
