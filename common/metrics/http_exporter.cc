#include "common/metrics/http_exporter.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flywheel::metrics {
namespace {

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

HttpExporter::HttpExporter(Registry* registry, Logger* logger)
    : registry_(registry), logger_(logger) {}

HttpExporter::~HttpExporter() { Stop(); }

absl::Status HttpExporter::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: expected host:port, got \"", address, "\""));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* result = nullptr;
  const std::string port_text = absl::StrCat(port);
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &result) != 0 ||
      result == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_listen: cannot resolve \"", host, "\""));
  }
  listen_fd_ = ::socket(result->ai_family, result->ai_socktype | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool bound = listen_fd_ >= 0 &&
                     ::bind(listen_fd_, result->ai_addr, result->ai_addrlen) == 0 &&
                     ::listen(listen_fd_, 64) == 0;
  freeaddrinfo(result);
  if (!bound) {
    const std::string error = std::strerror(errno);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot listen on ", address, ": ", error));
  }
  sockaddr_storage bound_address{};
  socklen_t length = sizeof(bound_address);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound_address), &length);
  port_ = ntohs(bound_address.ss_family == AF_INET6
                    ? reinterpret_cast<sockaddr_in6*>(&bound_address)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&bound_address)->sin_port);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  thread_ = std::thread([this] { Serve(); });
  return absl::OkStatus();
}

void HttpExporter::Stop() {
  if (!thread_.joinable()) return;
  const char byte = 'x';
  (void)!::write(wake_pipe_[1], &byte, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
  listen_fd_ = -1;
}

void HttpExporter::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents & POLLIN) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0) {
        Handle(client);
        ::close(client);
      }
    }
  }
}

void HttpExporter::Handle(int client) {
  timeval timeout{2, 0};
  ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  std::string request;
  char buffer[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    ssize_t n = ::recv(client, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  std::string status = "200 OK";
  std::string body;
  std::string type = "text/plain; version=0.0.4; charset=utf-8";
  if (absl::StartsWith(request, "GET /metrics")) {
    body = registry_->Render();
  } else if (absl::StartsWith(request, "GET /healthz")) {
    body = "ok\n";
  } else {
    status = "404 Not Found";
    body = "try /metrics\n";
  }
  WriteAll(client, absl::StrCat("HTTP/1.0 ", status, "\r\nContent-Type: ", type,
                                "\r\nContent-Length: ", body.size(),
                                "\r\nConnection: close\r\n\r\n", body));
}

}  // namespace flywheel::metrics
