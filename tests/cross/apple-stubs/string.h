/* Stand-in for the SDK's string.h, for the macOS type-check only (see TargetConditionals.h). */
#ifndef CROSS_STUB_STRING_H
#define CROSS_STUB_STRING_H
#include <stddef.h>
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#endif
