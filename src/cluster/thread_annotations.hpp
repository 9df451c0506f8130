// Clang's thread-safety annotations (-Wthread-safety): they write a locking
// contract in code, so that the compiler checks that a member GUARDED_BY a
// mutex is touched only with it held and a function that REQUIRES it is
// called only so. On other compilers they expand to nothing. Prefixed with
// SAGE_: Abseil, which gRPC includes, defines the bare names.
#pragma once

#if defined(__clang__)
#define SAGE_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SAGE_THREAD_ANNOTATION(x)
#endif

#define SAGE_CAPABILITY(name) SAGE_THREAD_ANNOTATION(capability(name))
#define SAGE_SCOPED_CAPABILITY SAGE_THREAD_ANNOTATION(scoped_lockable)
#define SAGE_GUARDED_BY(mutex) SAGE_THREAD_ANNOTATION(guarded_by(mutex))
#define SAGE_REQUIRES(...) SAGE_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define SAGE_ACQUIRE(...) SAGE_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define SAGE_RELEASE(...) SAGE_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
