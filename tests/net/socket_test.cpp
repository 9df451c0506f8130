// The free functions of net/socket.hpp: addresses and the local route.
#include "net/socket.hpp"

#include <gtest/gtest.h>

#include "sage/error.hpp"

namespace sage::net {
namespace {

TEST(LocalAddressTowardsTest, ThisMachineReachesItselfFromLoopback) {
  EXPECT_EQ(local_address_towards({"127.0.0.1", 10001}), "127.0.0.1");
}

TEST(LocalAddressTowardsTest, AHostThatDoesNotResolveIsAnError) {
  EXPECT_THROW(local_address_towards({"no-such-host.invalid", 10001}), Error);
}

TEST(AddressTest, ThePortIsDigitsOnly) {
  EXPECT_EQ(Address::parse("node-1:0").port, 0);
  EXPECT_EQ(Address::parse("::1:443").host, "::1");
  for (const char* text : {"host:+80", "host: 80", "host:80 ", "host:", ":80", "host:-1"}) {
    EXPECT_THROW(Address::parse(text), Error) << text;
  }
}

}  // namespace
}  // namespace sage::net
