/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file
 * Link and network header constants shared by the decoder and the reply builder.
 */
#ifndef TL_WIRE_H
#define TL_WIRE_H

#define ETH_HDR_LEN 14
#define VLAN_TAG_LEN 4
#define VLAN_MAX_TAGS 2

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86dd
#define ETHERTYPE_8021Q 0x8100
#define ETHERTYPE_8021AD 0x88a8
#define ETHERTYPE_QINQ_LEGACY 0x9100

#endif
