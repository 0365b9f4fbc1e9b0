// The harness's cuda_fp16.h: __half and its conversions are defined in cuda_host.h, which the
// compiler includes before the kernel source.
#pragma once
