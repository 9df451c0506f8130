// ChatStream, the reader of a streamed chat completion, fed server-sent events
// the way a network delivers them: split anywhere (byte by byte), with CRLF or
// LF line ends, comments, multi-line data, a usage chunk without choices, and
// what must end the attempt (an event that is not JSON or not a chunk, an
// error event, retried or not by its code and type).
#include <gtest/gtest.h>

#include <string>

#include "rag/openai_json.hpp"

namespace sage::rag::detail {
namespace {

std::string chunk_event(const std::string& piece, const std::string& eol = "\n") {
  return "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":"
         "{\"content\":\"" +
         piece + "\"}}]}" + eol + eol;
}

const std::string kUsage =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n";

TEST(ChatStream, AssemblesTextAndUsageFedByteByByte) {
  for (const std::string eol : {"\n", "\r\n"}) {
    const std::string stream =
        ": keep-alive" + eol +
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"," +
        "\"content\":\"\"}}]}" + eol + eol + chunk_event("Hello", eol) + chunk_event(" wide", eol) +
        "event: message" + eol + chunk_event(" world", eol) +
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}" + eol + eol +
        "data: {\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}" + eol + eol +
        "data: [DONE]" + eol + eol + chunk_event(" after done", eol);
    ChatStream reader;
    for (char c : stream) reader.feed(std::string_view(&c, 1));
    EXPECT_TRUE(reader.complete());
    Answer answer;
    reader.read_into(answer);
    EXPECT_EQ(answer.text, "Hello wide world") << "eol " << eol.size();
    EXPECT_EQ(answer.prompt_tokens, 7);
    EXPECT_EQ(answer.completion_tokens, 3);
    EXPECT_TRUE(reader.first_token().has_value());
  }
}

TEST(ChatStream, TheFirstTokenIsTheFirstNonEmptyPiece) {
  ChatStream reader;
  reader.feed(
      "data: "
      "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
  EXPECT_FALSE(reader.first_token().has_value());
  reader.feed(chunk_event("Hi"));
  EXPECT_TRUE(reader.first_token().has_value());
}

TEST(ChatStream, IsIncompleteUntilDoneOrAFinishReason) {
  ChatStream reader;
  reader.feed(chunk_event("Hello"));
  EXPECT_FALSE(reader.complete());
  reader.feed(kUsage);
  EXPECT_FALSE(reader.complete());
  reader.feed("data: [DONE]\n");  // the event is not over before its blank line
  EXPECT_FALSE(reader.complete());
  reader.feed("\n");
  EXPECT_TRUE(reader.complete());
  ChatStream without_done;
  without_done.feed(
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n");
  EXPECT_TRUE(without_done.complete());
}

TEST(ChatStream, JoinsMultiLineDataAndIgnoresOtherChoices) {
  ChatStream reader;
  reader.feed(
      "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}},\ndata: "
      "{\"index\":0,\"delta\":{\"content\":\"mine\"}}]}\n\n");
  Answer answer;
  reader.read_into(answer);
  EXPECT_EQ(answer.text, "mine");
}

// The fault feed() throws for `events`.
StreamFault fault_of(const std::string& events) {
  ChatStream reader;
  try {
    reader.feed(events);
  } catch (const StreamFault& fault) {
    return fault;
  }
  ADD_FAILURE() << "no fault for " << events;
  return StreamFault("", false);
}

TEST(ChatStream, RefusesEventsThatAreNotChunks) {
  const StreamFault not_json = fault_of(chunk_event("a") + "data: {\"choices\": [ oops\n\n");
  EXPECT_FALSE(not_json.retryable);
  EXPECT_NE(std::string(not_json.what()).find("the stream sent an event that is not JSON"),
            std::string::npos)
      << not_json.what();
  const StreamFault no_choices = fault_of("data: {\"id\": 1}\n\n");
  EXPECT_FALSE(no_choices.retryable);
  EXPECT_NE(std::string(no_choices.what()).find("not a chat.completion.chunk"), std::string::npos)
      << no_choices.what();
}

TEST(ChatStream, AnErrorEventIsRetriedByItsCodeOrType) {
  const StreamFault server = fault_of(
      "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n");
  EXPECT_TRUE(server.retryable);
  EXPECT_EQ(std::string(server.what()), "the stream sent an error event: overloaded");
  const StreamFault limited =
      fault_of("data: {\"error\":{\"message\":\"slow down\",\"type\":\"x\",\"code\":429}}\n\n");
  EXPECT_TRUE(limited.retryable);
  EXPECT_EQ(limited.status, 429);
  const StreamFault refused = fault_of(
      "data: {\"error\":{\"message\":\"content filtered\",\"type\":\"invalid_request_error\","
      "\"code\":400}}\n\n");
  EXPECT_FALSE(refused.retryable);
  EXPECT_EQ(refused.status, 400);
  const StreamFault typed = fault_of("event: error\ndata: {\"message\":\"gone\"}\n\n");
  EXPECT_FALSE(typed.retryable);
}

}  // namespace
}  // namespace sage::rag::detail
