/* hak_sizeclass.c -- the class tables and per-class geometry. */
#include "hak_sizeclass.h"

const uint8_t hak_sc_small_table[65] = {0,0,1,2,3,4,5,6,7,8,8,9,9,10,10,11,11,12,12,12,12,13,13,13,13,14,14,14,14,15,15,15,15,16,16,16,16,16,16,16,16,17,17,17,17,17,17,17,17,18,18,18,18,18,18,18,18,19,19,19,19,19,19,19,19};
const uint32_t hak_sc_size_table[HAK_SC_MAX] = {16,32,48,64,80,96,112,128,160,192,224,256,320,384,448,512,640,768,896,1024,1280,1536,1792,2048,2560,3072,3584,4096,5120,6144,7168,8192,10240,12288,14336,16384,20480,24576,28672,32768,40960,49152,57344,65536,81920,98304,114688,131072,163840,196608,229376,262144,327680,393216,458752,524288,655360,786432,917504,1048576};
// hak_sc_info, hak_sc_magic and hak_sc_unit: constants that hak_sc_gen.c computes at build time
// from the sizes above.
#ifndef HAK_SC_GEN
#include "hak_sc_tables.inc"
#endif
