// The TLS files of a node as it passes them to the processes it starts.
#include "net/tls.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sage/error.hpp"
#include "support/temp_dir.hpp"
#include "support/test_certificates.hpp"

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

std::string error_of(const TlsFiles& files) {
  try {
    files.require_server();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A node's TLS files are checked when it starts, with OpenSSL's reason, before
// gRPC (which would only say that it cannot listen) sees them.
TEST(TlsFilesTest, AServerChecksItsKeyCertificateAndCaWhenItStarts) {
  testing::TempDir dir, other;
  const TlsFiles files = testing::write_test_certificates(dir.path());
  EXPECT_EQ(error_of(files), "");
  const TlsFiles foreign = testing::write_test_certificates(other.path());

  TlsFiles mismatched = files;
  mismatched.key = foreign.key;
  EXPECT_EQ(
      error_of(mismatched)
          .find("cannot use TLS certificate " + files.cert + " with key " + foreign.key + ": "),
      0u)
      << error_of(mismatched);

  TlsFiles key_as_ca = files;
  key_as_ca.ca = files.key;
  EXPECT_EQ(error_of(key_as_ca).find("cannot use TLS CA " + files.key + ": "), 0u)
      << error_of(key_as_ca);
}

}  // namespace
}  // namespace sage::net
