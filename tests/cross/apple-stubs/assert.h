/* Stand-in for the SDK's assert.h, for the macOS type-check only (see TargetConditionals.h). */
#ifndef CROSS_STUB_ASSERT_H
#define CROSS_STUB_ASSERT_H
#define assert(x) ((x) ? (void)0 : __builtin_trap())
#endif
