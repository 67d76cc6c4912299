/* Stand-in for the Apple SDK header, for scripts/cross.sh's macOS type-check only:
 * Debian has no macOS SDK, and ring's build script compiles its C for the target
 * even when nothing is linked. The objects are never linked or run. */
#ifndef CROSS_STUB_TARGETCONDITIONALS_H
#define CROSS_STUB_TARGETCONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#endif
