"""The record model: bpf/uringwatch.h's ABI (layouts, opcodes, the opcode
registry), the events, and decoding, filtering and scanning records."""
