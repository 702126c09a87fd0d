// GCC 13's libstdc++ exports std::ios_base_library_init() (GLIBCXX_3.4.32) so that objects using <iostream>
// initialise the standard streams once. TorchSharp's native library is built with GCC 13 and asks for it;
// older libstdc++ (GCC 12, Debian 12 / Ubuntu 22.04) lacks it. This definition does the same work there.
#include <ios>
namespace std {
void ios_base_library_init() { static ios_base::Init init; }
}
