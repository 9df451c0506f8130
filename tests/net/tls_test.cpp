// The TLS files of a node as it passes them to the processes it starts.
#include "net/tls.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sage::net {
namespace {

TEST(TlsFilesTest, EnvironmentNamesTheFilesThatAreSetOnlyWhenTlsIsOn) {
  const TlsFiles all{.cert = "/c.pem", .key = "/k.pem", .ca = "/ca.pem"};
  EXPECT_EQ(all.environment(),
            (std::vector<std::string>{"SAGE_TLS_CERT=/c.pem", "SAGE_TLS_KEY=/k.pem",
                                      "SAGE_TLS_CA=/ca.pem"}));
  const TlsFiles client{.ca = "/ca.pem"};
  EXPECT_EQ(client.environment(), (std::vector<std::string>{"SAGE_TLS_CA=/ca.pem"}));
  const TlsFiles off{.cert = "/c.pem", .key = "/k.pem"};
  EXPECT_TRUE(off.environment().empty());
}

}  // namespace
}  // namespace sage::net
