/* bare.c -- a program that names no allocator function: only libc (strdup, the stdio buffer)
 * allocates. Linked with libhakmem.a it keeps glibc's malloc unless the link asks for malloc
 * (hakmem.pc's Libs.private and hakmem::hakmem_static pass -u malloc); install_test.sh
 * checks with nm and the HAKMEM_DEBUG=json report. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

int main(void) {
    char *s = strdup("bare");
    printf("%s ok\n", s ? s : "(null)");
    return s ? 0 : 1;  // s is left to the exit: freeing it would name free
}
